// e2e: rollback and history against the fake Connect with real MLflow 2.x and 3.x bundles.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const env = {
  CONNECT_SERVER: fake.url,
  CONNECT_API_KEY: PUBLISHER_KEY,
  MLFLOWCTL_CONFIG_DIR: tempDir('rb-config-'),
  MLFLOWCTL_DATA_DIR: tempDir('rb-data-'),
}
const cli = (args: string[]) => runCli([...args, '--json'], {env})

async function deployed(dir: string, args: string[]) {
  const result = await cli(['deploy', dir, ...args])
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`)
  return result.json!.result as {guid: string; bundleId: string}
}

describe('mlflowctl rollback and history', () => {
  it('rolls back to the previous bundle when the schema is unchanged, and records it', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const first = await deployed(dir, ['--new', '--name', 'rollback-same'])
    const second = await deployed(dir, ['-E', 'TEAM=b'])
    const refused = await cli(['rollback', '--guid', first.guid])
    assert.equal(refused.code, 2)
    assert.equal(refused.json!.error!.code, 'YES_REQUIRED')
    const rolled = await cli(['rollback', '--guid', first.guid, '--yes'])
    assert.equal(rolled.code, 0, rolled.stdout)
    assert.deepEqual(
      [rolled.json!.result.fromBundleId, rolled.json!.result.toBundleId],
      [second.bundleId, first.bundleId],
    )
    assert.equal(fake.content.get(first.guid)!.activeBundle, first.bundleId)
    const history = await cli(['history', '--guid', first.guid])
    assert.deepEqual(
      history.json!.result.events.map((e: {action: string; result: string; bundleId: string}) => [
        e.action,
        e.result,
        e.bundleId,
      ]),
      [
        ['deploy', 'ok', first.bundleId],
        ['deploy', 'ok', second.bundleId],
        ['rollback', 'ok', first.bundleId],
      ],
    )
    assert.equal(history.json!.result.events[0].user, 'publisher')
    assert.match(history.json!.result.events[0].revision, /^[0-9a-f]{12}$/)
  })

  it('refuses to roll back past a schema migration (2.x bundle after a 3.x upgrade)', async (t) => {
    const old = testVenvs().find((v) => v.mlflowVersion.startsWith('2.'))
    const current = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(old && current), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', old!.mlflowVersion])).code, 0)
    const before = await deployed(dir, ['--new', '--name', 'rollback-migrated'])
    // A 3.x bundle in its own mode (python-fastapi) is refused before anything changes: Connect cannot change a
    // deployed item's app mode (error 48).
    assert.equal((await runCli(['init', dir, '--force', '--mlflow-version', current!.mlflowVersion])).code, 0)
    const bundlesBefore = fake.content.get(before.guid)!.bundles.length
    const wrongMode = await cli(['deploy', dir])
    assert.equal(wrongMode.code, 2, wrongMode.stdout)
    assert.equal(wrongMode.json!.error!.code, 'APP_MODE_CHANGED')
    assert.match(wrongMode.json!.error!.suggestions[0], /version bump .* --app-mode python-api/)
    assert.equal(fake.content.get(before.guid)!.bundles.length, bundlesBefore, 'no bundle uploaded')
    assert.equal(fake.content.get(before.guid)!.env.get('MLFLOWCTL_OPS_TOKEN') !== undefined, true)
    // The suggested command renders it as python-api, which deploys.
    assert.equal(
      (await runCli(['version', 'bump', dir, '--to', current!.mlflowVersion, '--app-mode', 'python-api'])).code,
      0,
    )
    const upgraded = await cli(['deploy', dir])
    assert.equal(upgraded.code, 0, upgraded.stdout)
    assert.equal(fake.content.get(before.guid)!.app_mode, 'python-api')
    const refused = await cli(['rollback', '--guid', before.guid, '--yes'])
    assert.equal(refused.code, 6)
    assert.equal(refused.json!.error!.code, 'ROLLBACK_SCHEMA_MOVED')
    assert.match(refused.json!.error!.suggestions[0], /backup restore/)
    assert.equal(fake.content.get(before.guid)!.activeBundle, upgraded.json!.result.bundleId, 'nothing changed')
  })

  it('finds a bundle beyond the first page of a paged bundle list (a server that pages it, newest first)', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const paged = await startFakeConnect({bundleList: 'paged', bundlePageMax: 2})
    const pagedEnv = {...env, CONNECT_SERVER: paged.url, MLFLOWCTL_DATA_DIR: tempDir('rb-paged-data-')}
    const pagedCli = (args: string[]) => runCli([...args, '--json'], {env: pagedEnv})
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const first = await pagedCli(['deploy', dir, '--new', '--name', 'rollback-paged'])
    assert.equal(first.code, 0, first.stdout)
    const {guid, bundleId} = first.json!.result
    assert.equal((await pagedCli(['deploy', dir, '-E', 'TEAM=b'])).code, 0)
    // Three more uploads push the first bundle to the third page of two.
    const archive = readFileSync(paged.content.get(guid)!.bundles[0].file)
    for (let i = 0; i < 3; i++) {
      const upload = await fetch(`${paged.url}__api__/v1/content/${guid}/bundles`, {
        method: 'POST',
        headers: {Authorization: `Key ${PUBLISHER_KEY}`, 'Content-Type': 'application/gzip'},
        body: archive,
      })
      assert.equal(upload.status, 200)
    }
    const rolled = await pagedCli(['rollback', '--guid', guid, '--to', bundleId, '--yes'])
    assert.equal(rolled.code, 0, rolled.stdout)
    assert.equal(paged.content.get(guid)!.activeBundle, bundleId)
    assert.ok(
      paged.calls.filter((call) => call === 'GET /__api__/v1/content/{guid}/bundles').length >= 3,
      'the list was paged',
    )
  })
})
