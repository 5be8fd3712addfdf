// The MLflow client through (fake) Connect: Bearer is rejected, the mlflow-connect-auth plugin works.
import assert from 'node:assert/strict'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {connectAuthEnv, logRun, readRun} from '../support/mlflow-client.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'
import {runCli, tempDir} from '../support/cli.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'

const fake = await startFakeConnect()
const env = {CONNECT_SERVER: fake.url, CONNECT_API_KEY: PUBLISHER_KEY, MLFLOWCTL_CONFIG_DIR: tempDir('ca-config-')}

describe('MLflow client auth through Connect', () => {
  it('client-env gives a setup with which the real MLflow client logs runs; plain Bearer is refused', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const deployed = await runCli(['deploy', dir, '--new', '--name', 'client-auth', '--json'], {env})
    assert.equal(deployed.code, 0, deployed.stdout)
    const clientEnv = await runCli(['client-env', '--guid', deployed.json!.result.guid, '--json'], {env})
    assert.equal(clientEnv.code, 0, clientEnv.stdout)
    const {trackingUri, env: shown} = clientEnv.json!.result
    assert.equal(trackingUri, `${fake.url}content/${deployed.json!.result.guid}`)
    assert.equal(shown.MLFLOW_TRACKING_AUTH, 'connect-api-key')
    assert.ok(!clientEnv.stdout.includes(PUBLISHER_KEY))

    // The client as users configure it by default: MLFLOW_TRACKING_TOKEN -> Bearer, which Connect rejects.
    await assert.rejects(
      logRun({python: venv!.python, trackingUri, token: PUBLISHER_KEY}, 'bearer'),
      /401|Invalid login|Unauthorized/i,
    )

    // With the plugin installed (into a side directory, leaving the shared venv untouched).
    const target = {python: venv!.python, trackingUri, token: '', env: connectAuthEnv(venv!.python, PUBLISHER_KEY)}
    const {runId} = await logRun(target, 'plugin')
    const read = await readRun(target, runId)
    assert.deepEqual(read.params, {alpha: '0.5'})
    assert.equal(read.artifact, 'weights-v1')
  })
})
