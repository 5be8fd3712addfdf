// The upgrade matrix through the fake Connect with real MLflow: data written by an old release (the last 2.x,
// and a 3.0.x) on local SQLite and on PostgreSQL, upgraded with `upgrade plan` + `upgrade apply` to the newest
// 3.x and read back by it; and the failures (a bundle that crashes, a migration that fails, a verification that
// fails), each of which must end rolled back with the data exactly as before.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'
import {promisify} from 'node:util'

import Database from 'better-sqlite3'
import pg from 'pg'

import {renderBundle} from '../../src/core/bundle.js'
import {EXTENSION_TEMPLATES, readTree} from '../../src/adapters/fs/bundle-dir.js'
import {detectPythonVersion} from '../../src/adapters/python/python.js'
import {ensureVenv} from '../../src/adapters/python/venv.js'
import {runCli, tempDir} from '../support/cli.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {connectAuthEnv, logRichRun, serverSnapshot} from '../support/mlflow-client.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService, testVenvs} from '../support/services.js'

const OLD_3 = '3.0.1'
const execFileAsync = promisify(execFile)
const workDir = tempDir('upgrade-fake-connect-')
const fake = await startFakeConnect({workDir})
const env = {CONNECT_SERVER: fake.url, CONNECT_API_KEY: PUBLISHER_KEY, MLFLOWCTL_CONFIG_DIR: tempDir('upgrade-config-'), MLFLOWCTL_DATA_DIR: tempDir('upgrade-data-'), MLFLOWCTL_PYPI_URL: 'http://127.0.0.1:9'}
const cli = (args: string[]) => runCli([...args, '--json'], {env, timeoutMs: 900_000})
const newest = testVenvs().find((venv) => venv.mlflowVersion.startsWith('3.'))
const last2 = testVenvs().find((venv) => venv.mlflowVersion.startsWith('2.'))

/** The client venv of a release: the one the fake Connect builds from the bundle's requirements (cached). */
async function pythonFor(version: string): Promise<string> {
  const known = testVenvs().find((venv) => venv.mlflowVersion === version)
  if (known) return known.python
  const python = process.env.MLFLOWCTL_PYTHON || 'python3'
  const pythonVersion = await detectPythonVersion(python)
  const bundle = renderBundle(await readTree(EXTENSION_TEMPLATES), {storage: 'local', mlflowVersion: version, pythonVersion, toolVersion: 'test'})
  const requirements = bundle.files.find((file) => file.path === 'requirements.txt')!.content.toString('utf8')
  return (await ensureVenv({cacheDir: process.env.MLFLOWCTL_CACHE_DIR!, python, pythonVersion, requirements})).python
}

interface Deployment {
  guid: string
  contentUrl: string
  bundleId: string
  python: string
}

async function deployRelease(version: string, name: string, storage: {mode: string; env: string[]} = {mode: 'local', env: []}): Promise<Deployment> {
  const dir = join(tempDir(), name)
  assert.equal((await runCli(['init', dir, '--mlflow-version', version, '--storage', storage.mode])).code, 0)
  const deployed = await cli(['deploy', dir, '--new', '--name', name, ...storage.env.flatMap((value) => ['-E', value])])
  assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}`)
  return {guid: deployed.json!.result.guid, contentUrl: deployed.json!.result.contentUrl, bundleId: deployed.json!.result.bundleId, python: await pythonFor(version)}
}

const clientOf = (python: string, deployment: Deployment) => ({python, trackingUri: deployment.contentUrl.replace(/\/$/, ''), token: '', env: connectAuthEnv(python, PUBLISHER_KEY)})

/** Data written by the deployment's own (old) MLflow, and everything its server shows afterwards. */
async function writeData(deployment: Deployment): Promise<unknown> {
  await logRichRun(clientOf(deployment.python, deployment), 'before-upgrade-a')
  await logRichRun(clientOf(deployment.python, deployment), 'before-upgrade-b')
  return serverSnapshot(clientOf(deployment.python, deployment))
}

/** The schema revision the deployment reports, read through `db status --guid`. */
async function servedRevision(guid: string): Promise<string> {
  const status = await cli(['db', 'status', '--guid', guid])
  assert.equal(status.code, 0, status.stdout)
  return status.json!.result.revision
}

async function upgradeAndCompare(t: {name: string}, deployment: Deployment, before: unknown, extra: string[] = []): Promise<void> {
  const planFile = join(tempDir(), 'plan.json')
  const plan = await cli(['upgrade', 'plan', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--plan-file', planFile])
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
  assert.ok(history.json!.result.events.some((e: {action: string; result: string}) => e.action === 'upgrade' && e.result === 'ok'))
}

/** Posts one OTLP span to CONTENT/v1/traces (a FastAPI-only route) and looks for its trace through the REST API. */
async function otlpRoundTrip(python: string, contentUrl: string): Promise<string> {
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
  const {stdout} = await execFileAsync(python, ['-c', script, contentUrl], {env: {PATH: process.env.PATH, KEY: PUBLISHER_KEY}})
  return stdout.trim()
}

/** Traces are compared where both sides have them (a 2.x client sees none). */
function stripTraces(snapshot: any): any {
  return {...snapshot, experiments: snapshot.experiments.map((e: any) => ({...e, traces: e.traces.length > 0 ? e.traces : undefined}))}
}

function sqliteOf(guid: string): string {
  const dir = join(workDir, 'data', guid)
  assert.ok(readdirSync(dir).includes('mlflow.db'), readdirSync(dir).join(','))
  return join(dir, 'mlflow.db')
}

async function expectRolledBack(deployment: Deployment, before: unknown, revision: string, result: Awaited<ReturnType<typeof cli>>, restored = true): Promise<void> {
  assert.equal(result.code, 6, `${result.stdout}\n${result.stderr}`)
  assert.equal(result.json!.error!.code, 'UPGRADE_ROLLED_BACK', result.json!.error!.message)
  // The backup goes back only when the data changed; otherwise writes made meanwhile are kept.
  assert.match(result.json!.error!.message, restored ? /Rolled back: backup \S+ restored/ : /Rolled back: the data was unchanged/)
  // What the restore replaced (writes made during the attempt) is kept in a safety backup, and named.
  assert.equal(result.json!.error!.suggestions.some((s: string) => /^Safety backup \S+ holds/.test(s)), restored, result.json!.error!.suggestions.join('\n'))
  assert.equal(fake.content.get(deployment.guid)!.activeBundle, deployment.bundleId, 'the previous bundle serves')
  assert.equal(await servedRevision(deployment.guid), revision, 'the schema is back at the old head')
  assert.deepEqual(await serverSnapshot(clientOf(deployment.python, deployment)), before, 'the data is exactly as before')
  const history = await cli(['history', '--guid', deployment.guid])
  assert.ok(history.json!.result.events.some((e: {action: string; result: string}) => e.action === 'upgrade' && e.result === 'failed'))
}

describe('upgrade matrix (fake Connect, real MLflow)', () => {
  it(`local SQLite: the last 2.x → the newest 3.x keeps every row and byte`, async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-sqlite-2x')
    const before = await writeData(deployment)
    const md = await runCli(['upgrade', 'plan', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--format', 'md'], {env})
    assert.match(md.stdout, /^# MLflow upgrade plan: 2\.22\.5 → /m)
    assert.match(md.stdout, /## Breaking changes for operators[\s\S]*3\.3\.0: The server runs on uvicorn/)
    assert.match(md.stdout, /## Strategy: maintenance/)
    assert.match(md.stdout, /- app mode python-api: kept: the content was first deployed as python-api/)
    await upgradeAndCompare(t, deployment, before)
  })

  it(`local SQLite: ${OLD_3} → the newest 3.x keeps every row, byte and trace`, async (t) => {
    if (!requireService(t, Boolean(newest), NO_VENVS)) return
    const deployment = await deployRelease(OLD_3, 'upgrade-sqlite-30x')
    await upgradeAndCompare(t, deployment, await writeData(deployment))
  })

  for (const from of ['last 2.x', OLD_3]) {
    it(`PostgreSQL: ${from} → the newest 3.x keeps every row and byte`, async (t) => {
      if (!requireService(t, Boolean(newest && last2), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
      const version = from === OLD_3 ? OLD_3 : last2!.mlflowVersion
      const url = await createPgDatabase(`mlflowctl_upgrade_pg_${version.replaceAll('.', '_')}`)
      const artifacts = tempDir('upgrade-pg-artifacts-')
      const deployment = await deployRelease(version, `upgrade-pg-${version.replaceAll('.', '-')}`, {mode: 'custom', env: [`MLFLOW_BACKEND_STORE_URI=${url}`, `MLFLOW_ARTIFACTS_DESTINATION=${artifacts}`]})
      const before = await writeData(deployment)
      const refused = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
      assert.equal(refused.json!.error!.code, 'DATABASE_URL_REQUIRED', refused.stdout)
      const other = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes', '--db', `${url}_other`])
      assert.equal(other.json!.error!.code, 'DATABASE_MISMATCH', other.stdout)
      await upgradeAndCompare(t, deployment, before, ['--db', url])
    })
  }

  it('PostgreSQL: a migration that fails (a conflicting index) ends rolled back', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const url = await createPgDatabase('mlflowctl_upgrade_pg_fail')
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-pg-fail', {mode: 'custom', env: [`MLFLOW_BACKEND_STORE_URI=${url}`, `MLFLOW_ARTIFACTS_DESTINATION=${tempDir('upgrade-pg-artifacts-')}`]})
    const before = await writeData(deployment)
    const revision = await servedRevision(deployment.guid)
    const client = new pg.Client({connectionString: url})
    await client.connect()
    // 3.0.0's first migration creates this index; an object of the same name makes it fail.
    await client.query('CREATE INDEX index_logged_model_metrics_model_id ON runs (run_uuid)')
    await client.end()
    const result = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes', '--db', url])
    // PostgreSQL runs the whole migration in one transaction: the failure left nothing to restore.
    await expectRolledBack(deployment, before, revision, result, false)
    assert.ok(!result.stdout.includes('mlflowctl-ci') && !result.stderr.includes('mlflowctl-ci'), 'the database password stays out')
    const ledger = readFileSync(join(env.MLFLOWCTL_DATA_DIR, 'history.jsonl'), 'utf8')
    assert.ok(!ledger.includes('mlflowctl-ci') && !ledger.includes(PUBLISHER_KEY), 'and out of the history ledger')
  })

  it('local SQLite: a migration that fails part-way (a conflicting index) ends rolled back', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-sqlite-migration-fails')
    const before = await writeData(deployment)
    const revision = await servedRevision(deployment.guid)
    const db = new Database(sqliteOf(deployment.guid))
    db.exec('CREATE INDEX index_logged_model_metrics_model_id ON runs (run_uuid)')
    db.close()
    const result = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    await expectRolledBack(deployment, before, revision, result)
    const tables = new Database(sqliteOf(deployment.guid), {readonly: true}).prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'logged_models'").all()
    assert.deepEqual(tables, [], 'the tables the failed migration created are gone')
  })

  it('local SQLite: a bundle that crashes after it migrated ends rolled back', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-sqlite-crash')
    const before = await writeData(deployment)
    const revision = await servedRevision(deployment.guid)
    fake.crashAfterStart.add(deployment.guid)
    const result = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    await expectRolledBack(deployment, before, revision, result)
  })

  it('local SQLite: a verification that fails (3.5+ allowed hosts) ends rolled back', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-sqlite-verify')
    const before = await writeData(deployment)
    const revision = await servedRevision(deployment.guid)
    // 2.x ignores it; from 3.5 MLflow answers requests for other hosts with 403.
    fake.content.get(deployment.guid)!.env.set('MLFLOW_SERVER_ALLOWED_HOSTS', 'mlflow.example.invalid')
    const result = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    await expectRolledBack(deployment, before, revision, result)
    assert.match(result.json!.error!.message, /experiments\/search answered 403|Verification of the draft failed/)
  })

  it('without drafts (Connect < 2025.06): an activated bundle that fails verification ends rolled back (held restore)', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const oldConnect = await startFakeConnect({version: '2025.5.0'})
    const oldEnv = {...env, CONNECT_SERVER: oldConnect.url}
    const dir = join(tempDir(), 'no-drafts')
    assert.equal((await runCli(['init', dir, '--mlflow-version', last2!.mlflowVersion])).code, 0)
    const deployed = await runCli(['deploy', dir, '--new', '--name', 'upgrade-no-drafts', '--json'], {env: oldEnv})
    assert.equal(deployed.code, 0, deployed.stdout)
    const deployment: Deployment = {guid: deployed.json!.result.guid, contentUrl: deployed.json!.result.contentUrl, bundleId: deployed.json!.result.bundleId, python: last2!.python}
    const before = await writeData(deployment)
    oldConnect.content.get(deployment.guid)!.env.set('MLFLOW_SERVER_ALLOWED_HOSTS', 'mlflow.example.invalid')
    const result = await runCli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes', '--json'], {env: oldEnv, timeoutMs: 900_000})
    assert.equal(result.code, 6, `${result.stdout}\n${result.stderr}`)
    assert.equal(result.json!.error!.code, 'UPGRADE_ROLLED_BACK', result.json!.error!.message)
    assert.match(result.json!.error!.message, /restored into the activated bundle \d+ \(held\)/, 'the data went into the activated bundle, held, before the previous bundle came back')
    assert.equal(oldConnect.content.get(deployment.guid)!.activeBundle, deployment.bundleId)
    assert.deepEqual(await serverSnapshot(clientOf(deployment.python, deployment)), before, 'the data is exactly as before')
    const dataDir = join(oldConnect.options.workDir, 'data', deployment.guid)
    assert.ok(!readdirSync(dataDir).includes('.mlflowctl-held'), 'the previous bundle took the hold over')
  })

  it('refuses a target the database is ahead of, and changes nothing', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(newest!.mlflowVersion, 'upgrade-ahead')
    const plan = await cli(['upgrade', 'plan', '--guid', deployment.guid, '--to', last2!.mlflowVersion])
    assert.equal(plan.code, 0, plan.stdout)
    assert.equal(plan.json!.result.blocked, true)
    assert.ok(plan.json!.result.blockers.some((b: {code: string}) => b.code === 'DB_AHEAD_OF_TARGET'), JSON.stringify(plan.json!.result.blockers))
    const applied = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', last2!.mlflowVersion, '--yes'])
    assert.equal(applied.code, 6)
    assert.equal(applied.json!.error!.code, 'UPGRADE_BLOCKED')
    assert.equal(fake.content.get(deployment.guid)!.bundles.length, 1, 'no bundle was uploaded')
    const same = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    assert.equal(same.json!.result.outcome, 'nothing-to-do', same.stdout)
  })
})

describe('db migrate on a database file (real MLflow)', () => {
  async function oldDatabase(): Promise<string> {
    const dir = tempDir('migrate-db-')
    const {execFileSync} = await import('node:child_process')
    execFileSync(last2!.python, ['-c', `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\ns = SqlAlchemyStore("sqlite:///${dir}/mlflow.db", "${dir}/artifacts")\ns.create_experiment("kept")`])
    return dir
  }
  const revisionOf = (dir: string) => (new Database(join(dir, 'mlflow.db'), {readonly: true}).prepare('SELECT version_num FROM alembic_version').get() as {version_num: string}).version_num

  it('dry run, rehearsal, the backup gate and the migration itself', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const dir = await oldDatabase()
    const start = revisionOf(dir)
    const dry = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--dry-run'])
    assert.equal(dry.code, 0, dry.stdout)
    assert.equal(dry.json!.result.pending[0].revision, '400f98739977')
    const rehearsed = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--dry-run', '--rehearse'])
    assert.equal(rehearsed.code, 0, rehearsed.stdout)
    assert.equal(rehearsed.json!.result.rehearsal.ok, true)
    assert.equal(rehearsed.json!.result.rehearsal.revision, dry.json!.result.status.target.head)
    assert.ok(Array.isArray(rehearsed.json!.result.rehearsal.differences))
    assert.equal(revisionOf(dir), start, 'a rehearsal leaves the database alone')

    const repo = tempDir('migrate-repo-')
    const gated = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--repo', repo, '--yes'])
    assert.equal(gated.code, 6)
    assert.equal(gated.json!.error!.code, 'BACKUP_REQUIRED')
    const made = await cli(['backup', 'create', '--source', dir, '--repo', repo])
    assert.equal(made.code, 0, made.stdout)
    assert.equal((await cli(['backup', 'verify', made.json!.result.id, '--repo', repo])).code, 0)
    const migrated = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--repo', repo, '--yes'])
    assert.equal(migrated.code, 0, migrated.stdout)
    assert.equal(revisionOf(dir), dry.json!.result.status.target.head)
    assert.equal(migrated.json!.result.migrated.backupId, made.json!.result.id)
  })

  it('a rehearsal that fails reports the error and touches nothing; ahead and foreign databases are refused', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const dir = await oldDatabase()
    const file = join(dir, 'mlflow.db')
    const db = new Database(file)
    db.exec('CREATE INDEX index_logged_model_metrics_model_id ON runs (run_uuid)')
    db.close()
    const bytes = readFileSync(file)
    const failed = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--rehearse', '--dry-run'])
    assert.equal(failed.code, 6)
    assert.equal(failed.json!.error!.code, 'REHEARSAL_FAILED')
    assert.match(failed.json!.error!.message, /index_logged_model_metrics_model_id/)
    assert.ok(readFileSync(file).equals(bytes), 'the database file is byte for byte the same')

    const ahead = await cli(['db', 'migrate', '--db', dir, '--to', '1.30.0', '--dry-run'])
    assert.equal(ahead.code, 6)
    assert.equal(ahead.json!.error!.code, 'DB_AHEAD_OF_TARGET')
    const foreign = new Database(file)
    foreign.prepare('UPDATE alembic_version SET version_num = ?').run('0123456789ab')
    foreign.close()
    const refused = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--dry-run'])
    assert.equal(refused.code, 6)
    assert.equal(refused.json!.error!.code, 'FOREIGN_ALEMBIC_REVISION')
  })

  it('rehearses a PostgreSQL database on a scratch copy loaded from a backup', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const url = await createPgDatabase('mlflowctl_migrate_pg')
    const {execFileSync} = await import('node:child_process')
    execFileSync(last2!.python, ['-c', 'import os\nfrom mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\nSqlAlchemyStore(os.environ["URL"], "/tmp").create_experiment("kept")'], {env: {...process.env, URL: url}})
    const rehearsed = await cli(['db', 'migrate', '--db', url, '--to', newest!.mlflowVersion, '--rehearse', '--dry-run'])
    assert.equal(rehearsed.code, 0, `${rehearsed.stdout}\n${rehearsed.stderr}`)
    assert.equal(rehearsed.json!.result.rehearsal.ok, true)
    assert.match(rehearsed.json!.result.rehearsal.copiedFrom, /scratch database loaded from backup/)
    assert.ok(!rehearsed.stdout.includes('mlflowctl-ci') && !rehearsed.stderr.includes('mlflowctl-ci'), 'the password stays out')
    const client = new pg.Client({connectionString: url})
    await client.connect()
    const {rows} = await client.query('SELECT version_num FROM alembic_version')
    const scratch = await client.query("SELECT datname FROM pg_database WHERE datname LIKE 'mlflowctl_rehearse_%' OR datname LIKE 'mlflowctl_fresh_%'")
    await client.end()
    assert.equal(rows[0].version_num, rehearsed.json!.result.status.revision, 'the source database was not migrated')
    assert.deepEqual(scratch.rows, [], 'the scratch databases were dropped')
  })
})
