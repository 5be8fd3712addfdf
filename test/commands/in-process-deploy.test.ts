// deploy and history in process, with the composition root's adapters replaced by a scripted Connect
// (test/support/fake-deploy-deps.ts): flags → options, the --json envelope, exit codes.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import Deploy from '../../src/commands/deploy.js'
import History from '../../src/commands/history.js'
import {bundleOf, fakeDeps, GUID, SERVER} from '../support/fake-deploy-deps.js'
import {runInProcess} from '../support/in-process.js'
import {tempDir} from '../support/cli.js'

const env = {
  CONNECT_SERVER: SERVER,
  CONNECT_API_KEY: 'in-process-key-0123456789',
  MLFLOWCTL_CONFIG_DIR: tempDir('in-process-'),
}

describe('deploy (in process, Connect scripted)', () => {
  it('passes the flags on as options: env vars, vanity URL, OAuth integrations; --json envelope with exit 0', async () => {
    const {deps, calls} = fakeDeps(bundleOf('python-fastapi'), {deployed: 'python-fastapi', version: '2025.10.0'})
    const argv = [
      tempDir(),
      '--guid',
      GUID,
      '-E',
      'MLFLOW_X=1',
      '--vanity',
      '/mlflow/',
      '--oauth-integration',
      'int-1',
      '--json',
    ]
    const result = await runInProcess(Deploy, argv, {env, deps: {deploy: () => deps as any}})
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(result.json!.status, 0)
    assert.equal(result.json!.result.guid, GUID)
    assert.ok(
      calls.some((call) => /^setEnvironment MLFLOW_X,MLFLOWCTL_OPS_TOKEN$/.test(call)),
      calls.join('\n'),
    )
    assert.ok(calls.includes('setVanity /mlflow/'), calls.join('\n'))
    assert.ok(calls.includes('setOAuthIntegrations int-1'), calls.join('\n'))
    assert.ok(!result.stdout.includes('in-process-key-0123456789'), 'the API key is never printed')
  })

  it('a refused app-mode change is exit 2 with APP_MODE_CHANGED in the envelope, and nothing was changed', async () => {
    const {deps, calls} = fakeDeps(bundleOf('python-fastapi'), {deployed: 'python-api', version: '2025.10.0'})
    const result = await runInProcess(Deploy, [tempDir(), '--guid', GUID, '--json'], {
      env,
      deps: {deploy: () => deps as any},
    })
    assert.equal(result.code, 2)
    assert.equal(result.json!.status, 2)
    assert.equal(result.json!.error!.code, 'APP_MODE_CHANGED')
    assert.deepEqual(calls, ['history failed'])
  })

  it('--dry-run uploads nothing and exits 0', async () => {
    const {deps, calls} = fakeDeps(bundleOf('python-api'), {deployed: 'python-api', version: '2025.10.0'})
    const result = await runInProcess(Deploy, [tempDir(), '--guid', GUID, '--dry-run', '--json'], {
      env,
      deps: {deploy: () => deps as any},
    })
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.ok(!calls.some((call) => call.startsWith('uploadBundle') || call.startsWith('deploy ')), calls.join('\n'))
  })
})

describe('history (in process)', () => {
  it('reads the ledger through the composition root and filters by --guid', async () => {
    const events = [
      {time: '2026-12-01T00:00:00Z', action: 'deploy', guid: GUID, result: 'ok'},
      {time: '2026-12-02T00:00:00Z', action: 'deploy', guid: 'other', result: 'failed'},
    ]
    const history = () =>
      ({path: '/fake/history.jsonl', read: async () => events, append: async () => undefined}) as any
    const result = await runInProcess(History, ['--guid', GUID, '--json'], {env, deps: {history}})
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.deepEqual(
      result.json!.result.events.map((e: {guid: string}) => e.guid),
      [GUID],
    )
  })
})
