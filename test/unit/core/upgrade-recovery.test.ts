// An upgrade killed at each of its recorded steps, then finished or undone by the next command, against a model of
// a deployment: which bundle is active, the schema revision, whether the data was restored, and which bundle a
// process refuses. The end state must be one of two: the previous bundle on the old data, or the new bundle on the
// migrated data. The same kills against the fake Connect with real MLflow are in test/integration/upgrade-kills.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {inlineStepRunner} from '../../../src/core/ports.js'
import {applyUpgrade, type ApplyDeps, type ServingState} from '../../../src/core/upgrade-apply.js'
import {FAULT_STEPS, describeInterrupted, type UpgradeIntent} from '../../../src/core/upgrade-intent.js'
import {abortUpgrade, resumeUpgrade, upgradeStatus} from '../../../src/core/upgrade-recovery.js'
import {fakeApplyDeps, head} from '../../support/fake-upgrade-deps.js'

const OLD = head('2.22.5')
const NEW = head('3.17.2')
const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
const options = {server: 'https://connect.example.com', guid: GUID, to: '3.17.2'}

/** Where the deploy fails, if it does: after its draft migrated, or after the new bundle was activated. */
type Failure = 'none' | 'draft' | 'activated'

/** The deployment: bundle 7 runs 2.22.5 (head OLD), bundle 8 runs 3.17.2 (head NEW); one world per test. */
function world(killAt: string | undefined, failure: Failure) {
  const intents = new Map<string, UpgradeIntent>()
  const state = {active: '7', revision: OLD, held: false, dead: false, restores: 0}
  const alive = () => {
    if (state.dead) throw new Error('the process was killed')
  }
  // A process of bundle 7 refuses a schema past its head; bundle 8 migrates what it finds at start.
  const start = (bundle: string) => {
    state.active = bundle
    if (bundle === '8' && state.revision === OLD && !state.held) state.revision = NEW
    if (bundle === '7') state.held = false
  }
  // Each call is a new process: the one before it is gone.
  const deps = (kill?: string): ApplyDeps => {
    state.dead = false
    const {deps: base, history} = fakeApplyDeps()
    return Object.assign(base, {
      history,
      intents: {
        read: async (guid: string) => intents.get(guid),
        write: async (intent: UpgradeIntent) => {
          alive()
          intents.set(intent.guid, structuredClone(intent))
          if (intent.step === kill) state.dead = true
        },
        clear: async (guid: string) => (alive(), void intents.delete(guid)),
      },
      reached: () => alive(),
      backup: async () => (alive(), {id: `b${state.restores}`, path: '/repo/b', revision: state.revision}),
      bumpAndDeploy: async (
        _dir: string,
        _to: string,
        _guid: string,
        reached: (step: never, bundleId: string) => Promise<void>,
      ) => {
        alive()
        const at = (step: string) => reached(step as never, '8')
        await at('bundle-uploaded')
        state.revision = NEW // the draft runs the migrations
        await at('draft-deployed')
        if (failure === 'draft') throw new Error('draft verification failed')
        await at('draft-verified')
        start('8')
        await at('activated')
        if (failure === 'activated') throw new Error('the activated bundle failed verification')
        await at('verified')
        return {bundleId: '8', revision: NEW}
      },
      serving: async (): Promise<ServingState> => {
        alive()
        const refuses = (state.active === '7' && state.revision !== OLD) || (state.active === '8' && state.held)
        return {
          activeBundleId: state.active,
          revision: refuses ? undefined : state.revision,
          tables: ['experiments', 'runs', 'metrics'],
        }
      },
      restore: async (_backup: unknown, _live: unknown, hold?: boolean) => {
        alive()
        if (state.active === '7' && state.revision !== OLD) throw new Error('503: the process refused its start')
        state.revision = OLD
        state.held = Boolean(hold)
        state.restores += 1
        return {safetyBackup: 's1'}
      },
      activate: async (_guid: string, bundle: string) => (alive(), start(bundle)),
      verify: async (_guid: string, version: string) => {
        alive()
        const ok =
          version === '2.22.5' ? state.active === '7' && state.revision === OLD : state.active === '8' && !state.held
        return {ok, failures: ok ? [] : [`bundle ${state.active} at ${state.revision}`]}
      },
    })
  }
  return {intents, state, deps, killAt}
}

const settled = (state: {active: string; revision: string; held: boolean}) =>
  (state.active === '7' && state.revision === OLD && !state.held) ||
  (state.active === '8' && state.revision === NEW && !state.held)

describe('an upgrade killed at each step', () => {
  const cases: Array<{step: string; failure: Failure}> = FAULT_STEPS.map((step) => ({
    step,
    failure: ['restore-started', 'restore-finished', 'previous-reactivated'].includes(step) ? 'draft' : 'none',
  }))
  cases.push(
    ...['restore-started', 'restore-finished', 'previous-reactivated'].map((step) => ({
      step,
      failure: 'activated' as Failure,
    })),
  )

  for (const {step, failure} of cases) {
    for (const recovery of ['resume', 'abort'] as const) {
      it(`${step}${failure === 'none' ? '' : ` (after a failed ${failure === 'draft' ? 'draft' : 'activation'})`}, then upgrade ${recovery}`, async () => {
        const w = world(step, failure)
        await assert.rejects(applyUpgrade(w.deps(step), options, inlineStepRunner), /killed/)
        const intent = w.intents.get(GUID)
        assert.equal(intent?.step, step, 'the record names the last step done')
        const next = w.deps()
        const status = await upgradeStatus(next, GUID)
        assert.ok(status.interrupted, 'status reports the unfinished upgrade')
        // A new apply is refused while the record is there, and changes nothing.
        await assert.rejects(applyUpgrade(next, options, inlineStepRunner), {code: 'UPGRADE_IN_PROGRESS'})
        const before = {...w.state}
        if (recovery === 'resume' && !status.interrupted.resumable) {
          await assert.rejects(resumeUpgrade(next, GUID, inlineStepRunner), {code: 'UPGRADE_NOT_RESUMABLE'})
          assert.deepEqual(w.state, before, 'a refused resume changes nothing')
          await abortUpgrade(next, GUID, {}, inlineStepRunner)
        } else if (recovery === 'resume') {
          const result = await resumeUpgrade(next, GUID, inlineStepRunner)
          assert.equal(result.outcome, 'upgraded')
          assert.deepEqual([w.state.active, w.state.revision], ['8', NEW])
        } else {
          const result = await abortUpgrade(next, GUID, {}, inlineStepRunner)
          assert.equal(result.outcome, 'rolled-back')
          assert.deepEqual([w.state.active, w.state.revision], ['7', OLD])
        }
        assert.ok(settled(w.state), `settled: ${JSON.stringify(w.state)}`)
        assert.equal(w.intents.size, 0, 'the record is gone')
        assert.equal((await upgradeStatus(next, GUID)).inProgress, false)
      })
    }
  }

  it('abort --forget drops the record and changes nothing', async () => {
    const w = world('draft-deployed', 'none')
    await assert.rejects(applyUpgrade(w.deps('draft-deployed'), options, inlineStepRunner), /killed/)
    const next = w.deps()
    const before = {...w.state}
    const result = await abortUpgrade(next, GUID, {forget: true}, inlineStepRunner)
    assert.equal(result.outcome, 'forgotten')
    assert.deepEqual(w.state, before)
    assert.equal(w.intents.size, 0)
  })

  it('a backup that fails leaves no record, and nothing to resume', async () => {
    const w = world(undefined, 'none')
    const deps = w.deps()
    deps.backup = async () => {
      throw new Error('disk full')
    }
    await assert.rejects(applyUpgrade(deps, options, inlineStepRunner), /disk full/)
    assert.equal(w.intents.size, 0)
    assert.equal((await resumeUpgrade(w.deps(), GUID, inlineStepRunner)).outcome, 'none')
  })

  it('says which state it finds, and that a rollback in progress can only be finished', () => {
    const intent = {
      v: 1,
      server: options.server,
      guid: GUID,
      startedAt: 'then',
      updatedAt: 'then',
      step: 'restore-started',
      from: {bundleId: '7', mlflowVersion: '2.22.5', revision: OLD},
      to: {mlflowVersion: '3.17.2', head: NEW},
      state: {} as UpgradeIntent['state'],
      newBundleId: '8',
      cause: 'draft verification failed',
    } satisfies UpgradeIntent
    const described = describeInterrupted(intent, {activeBundleId: '7', revision: undefined})
    assert.equal(described.state, 'previous-on-migrated-schema')
    assert.equal(described.resumable, false)
    assert.deepEqual(described.next, [`mlflowctl upgrade abort --guid ${GUID}`])
    assert.match(described.summary, /draft verification failed/)
    const other = describeInterrupted({...intent, step: 'activated'}, {activeBundleId: '9', revision: NEW})
    assert.equal(other.state, 'other-bundle-active')
    assert.match(other.next[1], /--forget/)
  })
})
