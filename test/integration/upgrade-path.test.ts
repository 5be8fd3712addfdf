import assert from 'node:assert/strict'
import {readdirSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {logRun, readRun} from '../support/mlflow-client.js'
import {runCli, tempDir} from '../support/cli.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

describe('the same data dir across MLflow versions', () => {
  it('a DB written by 2.x starts under 3.x with its data (snapshot first), and 2.x then refuses the newer DB', async (t) => {
    const old = testVenvs().find((venv) => venv.mlflowVersion.startsWith('2.'))
    const current = testVenvs().find((venv) => venv.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(old && current), `${NO_VENVS} (needs a 2.x and a 3.x venv)`)) return
    const dir = join(tempDir(), 'ext')
    t.after(() => runCli(['dev', 'down', dir]))

    // Given a run logged by MLflow 2.x
    assert.equal((await runCli(['init', dir, '--mlflow-version', old!.mlflowVersion])).code, 0)
    let upResult = await runCli(['dev', 'up', dir, '--json'])
    assert.equal(upResult.code, 0, upResult.stderr)
    const endpoint = upResult.json!.result
    const {runId} = await logRun(
      {python: old!.python, trackingUri: endpoint.trackingUri, token: endpoint.apiKey},
      'kept-across-upgrade',
    )
    const before = (await runCli(['dev', 'status', dir, '--json'])).json!.result.ops.dbRevision
    assert.equal((await runCli(['dev', 'down', dir])).code, 0)

    // When the bundle is re-rendered for 3.x and started on the same data dir
    assert.equal((await runCli(['init', dir, '--force', '--mlflow-version', current!.mlflowVersion])).code, 0)
    upResult = await runCli(['dev', 'up', dir, '--json'])
    assert.equal(upResult.code, 0, upResult.stderr)
    assert.equal(upResult.json!.result.trackingUri, endpoint.trackingUri, 'same GUID and port')

    // Then the schema moved to the 3.x head, a pre-migration snapshot exists, and the run is intact
    const ops = (await runCli(['dev', 'status', dir, '--json'])).json!.result.ops
    assert.notEqual(ops.dbRevision, before)
    assert.equal(ops.dbRevision, ops.expectedHead)
    const snapshots = readdirSync(join(upResult.json!.result.dataDir, 'mlflowctl', 'snapshots'))
    assert.ok(
      snapshots.some((name) => name.includes(`${before}-to-${ops.dbRevision}`)),
      snapshots.join(','),
    )
    const read = await readRun(
      {python: current!.python, trackingUri: endpoint.trackingUri, token: endpoint.apiKey},
      runId,
    )
    assert.deepEqual(read.params, {alpha: '0.5'})
    assert.equal(read.artifact, 'weights-v1')
    const logs = await runCli(['dev', 'logs', dir, '--lines', '400'])
    assert.ok(logs.stdout.split('\n').filter((line) => line.includes('"migration.step"')).length > 0)
    assert.equal((await runCli(['dev', 'down', dir])).code, 0)

    // And going back to 2.x is refused, naming the revision, without touching the DB
    assert.equal((await runCli(['init', dir, '--force', '--mlflow-version', old!.mlflowVersion])).code, 0)
    const refused = await runCli(['dev', 'up', dir, '--json'])
    assert.equal(refused.code, 5)
    assert.equal(refused.json!.error!.code, 'DEV_START_FAILED')
    assert.match(refused.json!.error!.message, new RegExp(`refused to start: .*${ops.dbRevision}`))
    assert.match(refused.json!.error!.message, /Refusing to start/)
  })
})
