// rollback in process: the scripted Connect of test/support/fake-deploy-deps.ts plus a history ledger in memory.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import Rollback from '../../src/commands/rollback.js'
import {bundleOf, fakeDeps, GUID, SERVER} from '../support/fake-deploy-deps.js'
import {runInProcess} from '../support/in-process.js'
import {tempDir} from '../support/cli.js'

const env = {
  CONNECT_SERVER: SERVER,
  CONNECT_API_KEY: 'in-process-key-0123456789',
  MLFLOWCTL_CONFIG_DIR: tempDir('in-process-'),
}

/** Bundle 7 serves (the fake's extension reports revision r1); bundle 6 was deployed and verified at `revision`. */
function scripted(revision: string) {
  const {deps, calls} = fakeDeps(bundleOf('python-api'), {deployed: 'python-api', version: '2025.10.0'})
  const connect = {
    ...deps.connect,
    listBundles: async () => [
      {id: '6', created_time: '2026-11-01T00:00:00Z'},
      {id: '7', created_time: '2026-12-01T00:00:00Z'},
    ],
  }
  const events = [
    {
      v: 1,
      time: '2026-11-01T00:00:00Z',
      action: 'deploy',
      result: 'ok',
      server: SERVER,
      guid: GUID,
      bundleId: '6',
      revision,
      mlflowVersion: '3.17.2',
    },
  ]
  const history = () => ({path: '/fake/history.jsonl', read: async () => events, append: async () => undefined}) as any
  return {deps: {deploy: () => ({...deps, connect}) as any, history}, calls}
}

describe('rollback (in process, Connect scripted)', () => {
  it('activates the previous bundle when its verified schema is the live one: exit 0, the bundles in the envelope', async () => {
    const {deps, calls} = scripted('r1')
    const result = await runInProcess(Rollback, ['--guid', GUID, '--yes', '--json'], {env, deps})
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(result.json!.result.fromBundleId, '7')
    assert.equal(result.json!.result.toBundleId, '6')
    assert.ok(calls.includes('deploy 6 activate=true'), calls.join('\n'))
  })

  it('refuses when the schema moved past that bundle (exit 6, ROLLBACK_SCHEMA_MOVED) and activates nothing', async () => {
    const {deps, calls} = scripted('r0')
    const result = await runInProcess(Rollback, ['--guid', GUID, '--yes', '--json'], {env, deps})
    assert.equal(result.code, 6, result.stdout)
    assert.equal(result.json!.error!.code, 'ROLLBACK_SCHEMA_MOVED')
    assert.ok(!calls.some((call) => call.startsWith('deploy ')), calls.join('\n'))
  })

  it('--to a bundle that does not exist: exit 3, BUNDLE_NOT_FOUND, listing the bundles', async () => {
    const {deps} = scripted('r1')
    const result = await runInProcess(Rollback, ['--guid', GUID, '--to', '99', '--yes', '--json'], {env, deps})
    assert.equal(result.code, 3, result.stdout)
    assert.equal(result.json!.error!.code, 'BUNDLE_NOT_FOUND')
    assert.match(result.json!.error!.suggestions[0], /Bundles: 6, 7/)
  })
})
