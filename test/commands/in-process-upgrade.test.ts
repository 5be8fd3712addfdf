// upgrade apply in process, its steps replaced by the recorded fakes of test/support/fake-upgrade-deps.ts:
// flags → options (a saved plan, --to), the envelope, and the exit codes of an upgrade and of a rollback.
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Apply from '../../src/commands/upgrade/apply.js'
import Plan from '../../src/commands/upgrade/plan.js'
import Status from '../../src/commands/upgrade/status.js'
import Resume from '../../src/commands/upgrade/resume.js'
import Abort from '../../src/commands/upgrade/abort.js'
import {fakeApplyDeps, head} from '../support/fake-upgrade-deps.js'
import {runInProcess} from '../support/in-process.js'
import {tempDir} from '../support/cli.js'

const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
const env = {
  CONNECT_SERVER: 'https://connect.example.com',
  CONNECT_API_KEY: 'in-process-key-0123456789',
  MLFLOWCTL_CONFIG_DIR: tempDir('in-process-'),
}
const withDispose = (deps: object) => async () => ({...deps, dispose: async () => undefined}) as any

describe('upgrade apply (in process, steps faked)', () => {
  it('an upgrade that deploys and verifies: exit 0, outcome upgraded, in the envelope', async () => {
    const {deps, calls} = fakeApplyDeps({
      bumpAndDeploy: async () => (calls.push('deploy'), {bundleId: '8', revision: head('3.17.2')}),
      serving: async () => ({activeBundleId: '8', revision: head('3.17.2')}),
    })
    const result = await runInProcess(Apply, ['--guid', GUID, '--to', '3.17.2', '--yes', '--json'], {
      env,
      deps: {upgrade: withDispose(deps)},
    })
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(result.json!.result.outcome, 'upgraded')
    assert.deepEqual(calls.slice(0, 4), ['lock', 'read', 'backup', 'deploy'])
  })

  it('a failed deploy rolls back: exit 6, UPGRADE_ROLLED_BACK, and the key is not printed', async () => {
    const {deps} = fakeApplyDeps()
    const result = await runInProcess(Apply, ['--guid', GUID, '--to', '3.17.2', '--yes', '--json'], {
      env,
      deps: {upgrade: withDispose(deps)},
    })
    assert.equal(result.code, 6)
    assert.equal(result.json!.status, 6)
    assert.equal(result.json!.error!.code, 'UPGRADE_ROLLED_BACK')
    assert.ok(!result.stdout.includes(env.CONNECT_API_KEY))
  })

  it('--plan-file: a file that is not a plan is exit 2 (PLAN_INVALID) before any step runs', async () => {
    const {deps, calls} = fakeApplyDeps()
    const file = join(tempDir(), 'plan.json')
    writeFileSync(file, '{"not": "a plan"}')
    const result = await runInProcess(Apply, ['--guid', GUID, '--plan-file', file, '--yes', '--json'], {
      env,
      deps: {upgrade: withDispose(deps)},
    })
    assert.equal(result.code, 2, result.stdout)
    assert.equal(result.json!.error!.code, 'PLAN_INVALID')
    assert.deepEqual(calls, [])
  })
})

describe('upgrade plan (in process, live state faked)', () => {
  it('plans 2.22.5 → 3.17.2: exit 0, maintenance, not blocked; --plan-file writes the plan apply reads', async () => {
    const {live, head} = await import('../support/fake-upgrade-deps.js')
    const bundleDir = tempDir('plan-bundle-')
    const liveDeployment = async () => ({state: live('2.22.5', head('2.22.5')), bundleDir})
    const planFile = join(tempDir(), 'plan.json')
    const argv = ['--guid', GUID, '--to', '3.17.2', '--plan-file', planFile, '--json']
    const result = await runInProcess(Plan, argv, {env, deps: {liveDeployment}})
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(result.json!.result.blocked, false)
    assert.equal(result.json!.result.strategy, 'maintenance')
    assert.equal(result.json!.result.planFile, planFile)
    const {readSavedPlan} = await import('../../src/core/upgrade-plan.js')
    assert.equal(readSavedPlan(JSON.parse(readFileSync(planFile, 'utf8')), planFile).guid, result.json!.result.guid)
  })

  it('a target the database is ahead of: exit 0 with blocked true and the blocker named', async () => {
    const {live, head} = await import('../support/fake-upgrade-deps.js')
    const liveDeployment = async () => ({state: live('3.17.2', head('3.17.2')), bundleDir: tempDir('plan-bundle-')})
    const result = await runInProcess(Plan, ['--guid', GUID, '--to', '2.22.5', '--json'], {env, deps: {liveDeployment}})
    assert.equal(result.code, 0, result.stdout)
    assert.equal(result.json!.result.blocked, true)
    assert.ok(result.json!.result.blockers.some((b: {code: string}) => b.code === 'DB_AHEAD_OF_TARGET'))
  })
})

describe('upgrade status, resume and abort (in process, steps faked)', () => {
  const interrupted = () => {
    const faked = fakeApplyDeps({serving: async () => ({activeBundleId: '7', revision: head('3.17.2')})})
    faked.intents.set(GUID, {
      v: 1,
      server: env.CONNECT_SERVER,
      guid: GUID,
      startedAt: '2026-12-07T10:00:00Z',
      updatedAt: '2026-12-07T10:01:00Z',
      step: 'restore-started',
      from: {bundleId: '7', mlflowVersion: '2.22.5', revision: head('2.22.5')},
      to: {mlflowVersion: '3.17.2', head: head('3.17.2')},
      state: {} as never,
      backup: {id: 'b1', path: '/repo/b1', revision: head('2.22.5')},
      newBundleId: '8',
      cause: 'draft verification failed',
    })
    return faked
  }

  it('status: exit 6 and UPGRADE_IN_PROGRESS while one is unfinished, the next command first; exit 0 once none is', async () => {
    const {deps, intents} = interrupted()
    const run = () => runInProcess(Status, ['--guid', GUID, '--json'], {env, deps: {upgrade: withDispose(deps)}})
    const found = await run()
    assert.equal(found.code, 6, found.stdout)
    assert.equal(found.json!.error!.code, 'UPGRADE_IN_PROGRESS')
    assert.equal(found.json!.result.interrupted.state, 'previous-on-migrated-schema')
    assert.deepEqual(found.json!.error!.suggestions, [`mlflowctl upgrade abort --guid ${GUID}`])
    intents.clear()
    assert.equal((await run()).code, 0)
  })

  it('resume refuses a rollback that began (exit 6); abort without --yes cannot prompt (exit 2); abort --forget drops the record', async () => {
    const {deps, intents, calls} = interrupted()
    const run = (command: typeof Resume | typeof Abort, args: string[]) =>
      runInProcess(command, ['--guid', GUID, '--json', ...args], {env, deps: {upgrade: withDispose(deps)}})
    const resumed = await run(Resume, ['--yes'])
    assert.equal(resumed.code, 6, resumed.stdout)
    assert.equal(resumed.json!.error!.code, 'UPGRADE_NOT_RESUMABLE')
    const unconfirmed = await run(Abort, [])
    assert.equal(unconfirmed.code, 2, unconfirmed.stdout)
    assert.ok(!calls.includes('restore'), 'nothing restored without --yes')
    const forgotten = await run(Abort, ['--forget'])
    assert.equal(forgotten.code, 0, forgotten.stdout)
    assert.equal(forgotten.json!.result.outcome, 'forgotten')
    assert.equal(intents.size, 0)
  })
})
