// upgrade apply in process, its steps replaced by the recorded fakes of test/support/fake-upgrade-deps.ts:
// flags → options (a saved plan, --to), the envelope, and the exit codes of an upgrade and of a rollback.
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Apply from '../../src/commands/upgrade/apply.js'
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
