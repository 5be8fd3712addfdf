// The test bed of the upgrade files (upgrade-matrix, upgrade-rollback, db-migrate): a fake Connect per file,
// the CLI pointed at it, deployments of a given MLflow release, and the comparisons each case ends with.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {renderBundle} from '../../src/core/bundle.js'
import {EXTENSION_TEMPLATES, readTree} from '../../src/adapters/fs/bundle-dir.js'
import {detectPythonVersion} from '../../src/adapters/python/python.js'
import {ensureVenv} from '../../src/adapters/python/venv.js'
import {runCli, tempDir} from './cli.js'
import {PUBLISHER_KEY, startFakeConnect} from './fake-connect.js'
import {connectAuthEnv, logRichRunsThenSnapshot, serverSnapshot} from './mlflow-client.js'
import {testVenvs} from './services.js'

export const OLD_3 = '3.0.1'
/** Releases users still run, current in 2024 and 2023 (the newest patch of each line). */
export const OLDER_SOURCES = ['2.16.2', '2.9.2'] as const
const execFileAsync = promisify(execFile)
export const workDir = tempDir('upgrade-fake-connect-')
export const fake = await startFakeConnect({workDir})
export const env = {
  CONNECT_SERVER: fake.url,
  CONNECT_API_KEY: PUBLISHER_KEY,
  MLFLOWCTL_CONFIG_DIR: tempDir('upgrade-config-'),
  MLFLOWCTL_DATA_DIR: tempDir('upgrade-data-'),
  MLFLOWCTL_PYPI_URL: 'http://127.0.0.1:9',
}
export const cli = (args: string[]) => runCli([...args, '--json'], {env, timeoutMs: 900_000})
/** The arguments of `upgrade apply --yes` of a deployment to a release (the newest 3.x unless told). */
export const applyArgs = (guid: string, extra: string[] = [], to = newest?.mlflowVersion ?? '') => [
  'upgrade',
  'apply',
  '--guid',
  guid,
  '--to',
  to,
  '--yes',
  ...extra,
]
export const newest = testVenvs().find((venv) => venv.mlflowVersion.startsWith('3.'))
export const last2 = testVenvs().find((venv) => venv.mlflowVersion.startsWith('2.'))

/** The client venv of a release: the one the fake Connect builds from the bundle's requirements (cached). */
export async function pythonFor(version: string): Promise<string> {
  const known = testVenvs().find((venv) => venv.mlflowVersion === version)
  if (known) return known.python
  const python = process.env.MLFLOWCTL_PYTHON || 'python3'
  const pythonVersion = await detectPythonVersion(python)
  const bundle = renderBundle(await readTree(EXTENSION_TEMPLATES), {
    storage: 'local',
    mlflowVersion: version,
    pythonVersion,
    toolVersion: 'test',
  })
  const requirements = bundle.files.find((file) => file.path === 'requirements.txt')!.content.toString('utf8')
  return (await ensureVenv({cacheDir: process.env.MLFLOWCTL_CACHE_DIR!, python, pythonVersion, requirements})).python
}

export interface Deployment {
  guid: string
  contentUrl: string
  bundleId: string
  python: string
}

export async function deployRelease(
  version: string,
  name: string,
  storage: {mode: string; env: string[]} = {mode: 'local', env: []},
): Promise<Deployment> {
  const dir = join(tempDir(), name)
  assert.equal((await runCli(['init', dir, '--mlflow-version', version, '--storage', storage.mode])).code, 0)
  const deployed = await cli(['deploy', dir, '--new', '--name', name, ...storage.env.flatMap((value) => ['-E', value])])
  assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}`)
  return {
    guid: deployed.json!.result.guid,
    contentUrl: deployed.json!.result.contentUrl,
    bundleId: deployed.json!.result.bundleId,
    python: await pythonFor(version),
  }
}

export const clientOf = (python: string, deployment: Deployment) => ({
  python,
  trackingUri: deployment.contentUrl.replace(/\/$/, ''),
  token: '',
  env: connectAuthEnv(python, PUBLISHER_KEY),
})

/** Data written by the deployment's own (old) MLflow, and everything its server shows afterwards. */
export async function writeData(deployment: Deployment): Promise<unknown> {
  return logRichRunsThenSnapshot(clientOf(deployment.python, deployment), ['before-upgrade-a', 'before-upgrade-b'])
}

/** The schema revision the deployment reports, read through `db status --guid`. */
export async function servedRevision(guid: string): Promise<string> {
  const status = await cli(['db', 'status', '--guid', guid])
  assert.equal(status.code, 0, status.stdout)
  return status.json!.result.revision
}

/**
 * Plans and applies the upgrade to the newest 3.x and compares what the new release reads with `before`. `full`
 * also runs what does not depend on the source: an OTLP round trip, the stale plan's refusal and the ledger.
 */
export async function upgradeAndCompare(
  t: {name: string},
  deployment: Deployment,
  before: unknown,
  extra: string[] = [],
  full = true,
): Promise<void> {
  const planFile = join(tempDir(), 'plan.json')
  const plan = await cli([
    'upgrade',
    'plan',
    '--guid',
    deployment.guid,
    '--to',
    newest!.mlflowVersion,
    '--plan-file',
    planFile,
  ])
  assert.equal(plan.code, 0, plan.stdout)
  assert.equal(plan.json!.result.strategy, 'maintenance')
  assert.equal(plan.json!.result.blocked, false, JSON.stringify(plan.json!.result.blockers))
  assert.ok(plan.json!.result.schema.pending.length > 0)
  assert.equal(plan.json!.result.schema.pending.at(-1).revision, plan.json!.result.to.head)
  const applied = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--plan-file', planFile, '--yes', ...extra])
  assert.equal(applied.code, 0, `${t.name}: ${applied.stdout}\n${applied.stderr}`)
  assert.equal(applied.json!.result.outcome, 'upgraded')
  assert.equal(fake.content.get(deployment.guid)!.activeBundle, applied.json!.result.bundleId)
  assert.equal(applied.json!.result.revision, plan.json!.result.to.head)
  // Read by the new release: every experiment, run, metric history, param, tag, artifact (sha256) and model.
  const after = await serverSnapshot(clientOf(newest!.python, deployment))
  assert.deepEqual(stripTraces(after), stripTraces(before))
  if (!full) return
  // The content keeps its app mode (Connect cannot change it) and serves the new release's whole app: a route
  // only the FastAPI app has (OTLP trace ingestion) takes a span through Connect, and the REST API finds it.
  const firstMode = plan.json!.result.from.appMode
  assert.equal(plan.json!.result.to.appMode, firstMode)
  assert.equal(fake.content.get(deployment.guid)!.app_mode, firstMode)
  assert.equal(await otlpRoundTrip(newest!.python, deployment.contentUrl), 'found')
  // The saved plan no longer matches the deployment.
  const stale = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--plan-file', planFile, '--yes', ...extra])
  assert.equal(stale.code, 6)
  assert.equal(stale.json!.error!.code, 'PLAN_STALE')
  const history = await cli(['history', '--guid', deployment.guid])
  assert.ok(
    history.json!.result.events.some(
      (e: {action: string; result: string}) => e.action === 'upgrade' && e.result === 'ok',
    ),
  )
}

/** Posts one OTLP span to CONTENT/v1/traces (a FastAPI-only route) and looks for its trace through the REST API. */
export async function otlpRoundTrip(python: string, contentUrl: string): Promise<string> {
  const script = `
import json, os, sys, time, urllib.request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
base, key = sys.argv[1], os.environ["KEY"]
trace_id = os.urandom(16)
now = time.time_ns()
span = Span(trace_id=trace_id, span_id=os.urandom(8), name="otlp-probe", start_time_unix_nano=now - 1000000, end_time_unix_nano=now)
body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]).SerializeToString()
headers = {"Authorization": "Key " + key, "Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": "0"}
urllib.request.urlopen(urllib.request.Request(base + "v1/traces", data=body, headers=headers, method="POST"), timeout=60).read()
search = json.dumps({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]}).encode()
found = urllib.request.urlopen(urllib.request.Request(base + "api/3.0/mlflow/traces/search", data=search, headers={"Authorization": "Key " + key, "Content-Type": "application/json"}, method="POST"), timeout=60).read().decode()
print("found" if trace_id.hex() in found else "missing: " + found[:300])
`
  const {stdout} = await execFileAsync(python, ['-c', script, contentUrl], {
    env: {PATH: process.env.PATH, KEY: PUBLISHER_KEY},
  })
  return stdout.trim()
}

/** Traces are compared where both sides have them (a 2.x client sees none). */
export function stripTraces(snapshot: any): any {
  return {
    ...snapshot,
    experiments: snapshot.experiments.map((e: any) => ({...e, traces: e.traces.length > 0 ? e.traces : undefined})),
  }
}

export function sqliteOf(guid: string): string {
  const dir = join(workDir, 'data', guid)
  assert.ok(readdirSync(dir).includes('mlflow.db'), readdirSync(dir).join(','))
  return join(dir, 'mlflow.db')
}

export async function expectRolledBack(
  deployment: Deployment,
  before: unknown,
  revision: string,
  result: Awaited<ReturnType<typeof cli>>,
  restored = true,
): Promise<void> {
  assert.equal(result.code, 6, `${result.stdout}\n${result.stderr}`)
  assert.equal(result.json!.error!.code, 'UPGRADE_ROLLED_BACK', result.json!.error!.message)
  // The backup goes back only when the data changed; otherwise writes made meanwhile are kept.
  assert.match(
    result.json!.error!.message,
    restored ? /Rolled back: backup \S+ restored/ : /Rolled back: the data was unchanged/,
  )
  // What the restore replaced (writes made during the attempt) is kept in a safety backup, and named.
  assert.equal(
    result.json!.error!.suggestions.some((s: string) => /^Safety backup \S+ holds/.test(s)),
    restored,
    result.json!.error!.suggestions.join('\n'),
  )
  assert.equal(fake.content.get(deployment.guid)!.activeBundle, deployment.bundleId, 'the previous bundle serves')
  assert.equal(await servedRevision(deployment.guid), revision, 'the schema is back at the old head')
  assert.deepEqual(
    await serverSnapshot(clientOf(deployment.python, deployment)),
    before,
    'the data is exactly as before',
  )
  const history = await cli(['history', '--guid', deployment.guid])
  assert.ok(
    history.json!.result.events.some(
      (e: {action: string; result: string}) => e.action === 'upgrade' && e.result === 'failed',
    ),
  )
}
