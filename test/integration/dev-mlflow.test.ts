import assert from 'node:assert/strict'
import {join} from 'node:path'
import {describe, it, type TestContext} from 'node:test'

import {opsStatusSchema, STATUS_FORMAT_VERSION, storageReportSchema} from '../../src/core/extension-contract.js'
import {logRun, readRun} from '../support/mlflow-client.js'
import {runCli, tempDir, type CliResult} from '../support/cli.js'
import {
  createPgDatabase,
  NO_PG,
  NO_VENVS,
  pgBaseUrl,
  requireService,
  testVenvs,
  type TestVenv,
} from '../support/services.js'

// The suite runs for every provisioned MLflow (newest 3.x and last 2.x); without venvs it runs one
// placeholder per storage mode that skips (locally) or fails (CI).
const venvs: Array<TestVenv | undefined> = testVenvs().length > 0 ? testVenvs() : [undefined]

async function up(t: TestContext, dir: string, extra: string[] = []): Promise<CliResult> {
  const result = await runCli(['dev', 'up', dir, '--json', ...extra])
  t.after(() => runCli(['dev', 'down', dir]))
  assert.equal(result.code, 0, `dev up failed:\n${result.stdout}\n${result.stderr}`)
  return result
}

async function roundTrip(venv: TestVenv, endpoint: {trackingUri: string; apiKey: string}) {
  const target = {python: venv.python, trackingUri: endpoint.trackingUri, token: endpoint.apiKey}
  const logged = await logRun(target, 'integration')
  assert.match(logged.artifactUri, /^mlflow-artifacts:\//, 'artifacts go through the server proxy')
  const read = await readRun(target, logged.runId)
  assert.deepEqual(read.params, {alpha: '0.5'})
  assert.deepEqual(read.metrics, {rmse: 0.876})
  assert.equal(read.artifact, 'weights-v1')
  return logged.runId
}

for (const venv of venvs) {
  const label = venv ? `MLflow ${venv.mlflowVersion}` : 'MLflow (no venv)'

  describe(`dev up with ${label}`, () => {
    it('local storage: logs and reads back a run through /content/<guid>/, reports head, rejects a wrong key', async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS)) return
      const dir = join(tempDir(), 'local')
      assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
      const {json} = await up(t, dir)
      const endpoint = json!.result
      assert.match(endpoint.trackingUri, /^http:\/\/127\.0\.0\.1:\d+\/content\/[0-9a-f-]{36}$/)
      await roundTrip(venv!, endpoint)
      const status = await runCli(['dev', 'status', dir, '--json'])
      assert.equal(status.code, 0)
      const ops = status.json!.result.ops
      // The contract: the real extension's status has exactly the fields the CLI reads (no field on one side only).
      opsStatusSchema.strict().parse(ops)
      assert.equal(ops.statusVersion, STATUS_FORMAT_VERSION)
      assert.equal(ops.mlflowVersion, venv!.mlflowVersion)
      assert.equal(ops.storageMode, 'local')
      assert.equal(ops.schemaState, 'current')
      assert.equal(ops.dbRevision, ops.expectedHead)
      assert.ok(ops.dataDirFreeBytes > 0)
      for (const headers of [{}, {Authorization: 'Key not-the-key-0000000000'}] as Array<Record<string, string>>) {
        const response = await fetch(`${endpoint.trackingUri}/api/2.0/mlflow/experiments/search?max_results=1`, {
          headers,
        })
        assert.equal(response.status, 401)
      }
      const again = await runCli(['dev', 'up', dir, '--json'])
      assert.equal(again.json!.result.alreadyRunning, true)
      assert.equal(again.json!.result.trackingUri, endpoint.trackingUri)
      // One rule for the dev key: dev up prints it (key and login link agree), no other command does.
      assert.match(endpoint.apiKey, /^[0-9a-f]{48}$/)
      assert.equal(endpoint.uiUrl, `${new URL(endpoint.trackingUri).origin}/__login__?key=${endpoint.apiKey}`)
      assert.equal(again.json!.result.apiKey, endpoint.apiKey)
      const doctor = await runCli(['doctor', '--dev', dir, '--deep', '--json'])
      assert.equal(doctor.code, 0, doctor.stdout)
      const checks = Object.fromEntries(
        doctor.json!.result.checks.map((c: {id: string; status: string}) => [c.id, c.status]),
      )
      for (const id of [
        'dev.instance',
        'mlflow.health',
        'mlflow.version',
        'mlflow.rest',
        'mlflow.artifacts',
        'extension.schema',
      ])
        assert.equal(checks[id], 'pass', `${id}: ${doctor.stdout}`)
      // storage report through the dev instance's ops endpoint: the real extension's report has exactly the fields
      // the CLI reads.
      const storage = await runCli(['storage', 'report', '--dev', dir, '--json'])
      assert.equal(storage.code, 0, `${storage.stdout}\n${storage.stderr}`)
      const {location, trend, ...report} = storage.json!.result
      storageReportSchema.strict().parse(report)
      assert.deepEqual([location, trend, report.database.dialect], [`dev:${dir}`, [], 'sqlite'])
      assert.ok(report.artifacts.files >= 1, "the round trip's artifact is listed")
      const logs = await runCli(['dev', 'logs', dir, '--lines', '1000', '--json'])
      const lines: string[] = logs.json!.result.lines.filter((line: string) => line.trim())
      const parsed = lines.map((line) => JSON.parse(line) as {logger: string})
      assert.ok(
        parsed.every((entry) => typeof entry === 'object' && entry.logger),
        'every dev log line is a JSON object',
      )
      assert.ok(
        parsed.some((entry) => /^(uvicorn|gunicorn|server\.)/.test(entry.logger)),
        "the server's own lines are in the log, as JSON",
      )
      for (const text of [status.stdout, doctor.stdout, logs.stdout, storage.stdout, storage.stderr])
        assert.ok(!text.includes(endpoint.apiKey), 'dev key printed')
    })

    it('custom PostgreSQL storage: the same round trip, and the password never reaches output or logs', async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
      const dbUrl = await createPgDatabase(`dev_${venv!.mlflowVersion.replaceAll('.', '_')}_${process.pid}`)
      const password = new URL(dbUrl).password
      const dir = join(tempDir(), 'custom')
      assert.equal(
        (await runCli(['init', dir, '--storage', 'custom', '--mlflow-version', venv!.mlflowVersion])).code,
        0,
      )
      const result = await up(t, dir, [
        '-E',
        `MLFLOW_BACKEND_STORE_URI=${dbUrl}`,
        '-E',
        `MLFLOW_ARTIFACTS_DESTINATION=${join(tempDir(), 'artifacts')}`,
      ])
      await roundTrip(venv!, result.json!.result)
      const status = await runCli(['dev', 'status', dir, '--json'])
      opsStatusSchema.strict().parse(status.json!.result.ops)
      assert.equal(status.json!.result.ops.storageMode, 'custom')
      assert.equal(status.json!.result.ops.dbRevision, status.json!.result.ops.expectedHead)
      assert.match(status.json!.result.ops.backendStore, /:\*\*\*@/)
      const logs = await runCli(['dev', 'logs', dir, '--lines', '500'])
      for (const text of [result.stdout, result.stderr, status.stdout, logs.stdout])
        assert.ok(!text.includes(password), 'password leaked')
    })
  })
}
