// A replica that follows a deployment: the extension deployed through the fake Connect (which runs it with
// real MLflow) with MLFLOWCTL_REPLICA_URL; runs logged through Connect reach the replica; a redeploy to the same GUID
// keeps replicating (the new process takes the replica lock when the old one stops, after its last round); `replica
// status --guid` and doctor see it; a restore from the replica holds the runs and artifacts from both bundles. And a
// replica in S3 (moto, IAM enforced) written with the AWS credentials the content's Connect OAuth integration issues.
import assert from 'node:assert/strict'
import {randomUUID} from 'node:crypto'
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {connectAuthEnv, logRun} from '../support/mlflow-client.js'
import {awsIntegration, NO_EMULATORS, startMoto} from '../support/cloud.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const INTEGRATION = randomUUID()
const configDir = tempDir('replica-connect-config-')
const env = {CONNECT_SERVER: fake.url, CONNECT_API_KEY: PUBLISHER_KEY, MLFLOWCTL_CONFIG_DIR: configDir}
const cli = (args: string[]) => runCli([...args, '--json'], {env})

/** Polls `replica status --guid` until the replica holds `artifacts` files and a round began after `since`. */
async function replicated(guid: string, artifacts: number, since: number) {
  let last: any
  for (let attempt = 0; attempt < 60; attempt++) {
    last = await cli(['replica', 'status', '--guid', guid])
    const result = last.json?.result
    if (
      result?.extension?.role === 'replicating' &&
      result.extension.lastRoundAt > since &&
      result.contents?.artifacts.files >= artifacts
    )
      return result
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  assert.fail(`the replica did not catch up: ${last.stdout}\n${last.stderr}`)
}

describe('a replica across a redeploy to the same GUID', () => {
  it('keeps replicating, reports it, and restores the runs of both bundles', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    const replica = join(tempDir('replica-connect-'), 'replica')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const first = await cli([
      'deploy',
      dir,
      '--new',
      '--name',
      'replicated',
      '-E',
      `MLFLOWCTL_REPLICA_URL=${replica}`,
      '-E',
      'MLFLOWCTL_REPLICA_INTERVAL=0.2',
    ])
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`)
    const {guid, contentUrl} = first.json!.result
    const client = {
      python: venv!.python,
      trackingUri: contentUrl.replace(/\/$/, ''),
      token: '',
      env: connectAuthEnv(venv!.python, PUBLISHER_KEY),
    }
    const before = await logRun(client, 'before-redeploy')
    const firstStatus = await replicated(guid, 1, Date.now() / 1000)
    const firstGeneration = firstStatus.extension.generation

    const second = await cli(['deploy', dir, '-E', 'TEAM=platform'])
    assert.equal(second.code, 0, second.stdout)
    assert.equal(second.json!.result.guid, guid)
    const after = await logRun(client, 'after-redeploy')
    const status = await replicated(guid, 2, Date.now() / 1000)
    t.diagnostic(
      `after the redeploy: generation ${status.extension.generation} (first ${firstGeneration}), resumed ${status.extension.resumed}, ${status.contents.generations.length} generation(s), window ${status.contents.window.from} → ${status.contents.window.to}`,
    )
    // The new process took the lock when the old one stopped and continued the same generation from its last
    // segment (the WAL lives on: the new bundle's connections kept it), so the window runs unbroken across the redeploy.
    assert.equal(status.extension.generation, firstGeneration)
    assert.equal(status.extension.resumed, true)
    assert.equal(status.contents.generations.length, 1)
    assert.equal(status.contents.window.from, firstStatus.contents.window.from)

    const doctor = await runCli(['doctor', dir, '--only', 'extension.replica', '--json'], {env})
    const check = doctor.json!.result.checks.find((c: {id: string}) => c.id === 'extension.replica')
    assert.equal(check.status, 'pass', doctor.stdout)
    assert.match(check.detail, /^replicating to /)

    const target = join(tempDir('replica-connect-restore-'), 'data')
    const restored = await cli(['backup', 'restore', '--from-replica', replica, '--to', target])
    assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`)
    const db = new Database(join(target, 'mlflow.db'), {readonly: true})
    try {
      const runs = db.prepare('SELECT run_uuid FROM runs ORDER BY start_time').pluck().all()
      assert.deepEqual(runs, [before.runId, after.runId])
    } finally {
      db.close()
    }
    const artifactFiles = (run: string) =>
      readdirSync(join(target, 'artifacts'), {recursive: true}).filter((p) => String(p).includes(run))
    assert.ok(
      artifactFiles(before.runId).length > 0 && artifactFiles(after.runId).length > 0,
      'both runs\u2019 artifacts',
    )
    assert.ok(existsSync(join(replica, 'mlflowctl-replica.json')))
  })
})

describe('a replica in S3 with the credentials of the content’s Connect OAuth integration', () => {
  it('replicates with Connect-issued AWS credentials (moto, IAM enforced) and restores from the bucket', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const moto = await startMoto('mlflow-replicas')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const integration = awsIntegration(moto!, 12)
    const connect = await startFakeConnect({integrations: {[INTEGRATION]: integration}, sessionTokenFile: true})
    const creds = await moto!.assumeRole()
    // The CLI reads the bucket with its own credentials; the extension has none but Connect's.
    const cliEnv = {
      CONNECT_SERVER: connect.url,
      CONNECT_API_KEY: PUBLISHER_KEY,
      MLFLOWCTL_CONFIG_DIR: tempDir('replica-oauth-config-'),
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
      AWS_REGION: 'us-east-1',
      MLFLOW_S3_ENDPOINT_URL: moto!.url,
    }
    const oauthCli = (args: string[]) => runCli([...args, '--json'], {env: cliEnv})
    const dir = join(tempDir(), 'ext')
    const url = 's3://mlflow-replicas/team-a'
    assert.equal(
      (await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion, '--replica-store', 's3'])).code,
      0,
    )
    const deployed = await oauthCli([
      'deploy',
      dir,
      '--new',
      '--name',
      'replicated-to-s3',
      '--oauth-integration',
      INTEGRATION,
      ...[`MLFLOWCTL_REPLICA_URL=${url}`, 'MLFLOWCTL_REPLICA_INTERVAL=0.5', `MLFLOW_S3_ENDPOINT_URL=${moto!.url}`]
        .concat(['AWS_REGION=us-east-1'])
        .flatMap((pair) => ['-E', pair]),
    ])
    assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}`)
    const {guid, contentUrl} = deployed.json!.result
    const client = {
      python: venv!.python,
      trackingUri: contentUrl.replace(/\/$/, ''),
      token: '',
      env: connectAuthEnv(venv!.python, PUBLISHER_KEY),
    }
    const {runId} = await logRun(client, 'replicated-to-s3')
    const since = Date.now() / 1000
    let status: any
    for (let attempt = 0; attempt < 60; attempt++) {
      status = (await oauthCli(['replica', 'status', '--guid', guid])).json?.result
      if (status?.extension?.lastRoundAt > since && status.contents?.artifacts.files >= 1) break
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    assert.equal(status.extension.role, 'replicating', JSON.stringify(status))
    assert.equal(status.extension.credentials, 'connect')
    assert.ok(integration.issued.length >= 1, 'the extension exchanged its session token for AWS credentials')
    assert.ok(status.contents.artifacts.files >= 1, JSON.stringify(status))

    const target = join(tempDir('replica-oauth-restore-'), 'data')
    const restored = await oauthCli(['backup', 'restore', '--from-replica', url, '--to', target])
    assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`)
    const db = new Database(join(target, 'mlflow.db'), {readonly: true})
    try {
      assert.equal(db.prepare('SELECT count(*) FROM runs WHERE run_uuid = ?').pluck().get(runId), 1)
    } finally {
      db.close()
    }
  })
})
