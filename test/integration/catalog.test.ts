// The committed catalog against the MLflow installed in the test venvs (their heads and chains must match),
// and `db status` on databases that real MLflow created.
// test-pool: background (no deadline here that a slow, busy machine could miss)
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_PG, NO_VENVS, createPgDatabase, pgBaseUrl, requireService, testVenvs} from '../support/services.js'
import {chainTo, findRelease, type MigrationCatalog} from '../../src/core/catalog.js'
import {expectedSchema, foreignObjects, missingTables, type SchemaObject} from '../../src/core/backup/schema-objects.js'

const catalog = JSON.parse(
  readFileSync(new URL('../../catalog/mlflow-migrations.json', import.meta.url), 'utf8'),
) as MigrationCatalog
const venvs = testVenvs()
const oldest = [...venvs].sort((a, b) => a.mlflowVersion.localeCompare(b.mlflowVersion, undefined, {numeric: true}))[0]
const newest = venvs.find((v) => v.mlflowVersion.startsWith('3.'))

const INSTALLED = `
import json
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision
script = ScriptDirectory.from_config(_get_alembic_config("sqlite://"))
print(json.dumps({"head": _get_latest_schema_revision(), "chain": [r.revision for r in reversed(list(script.walk_revisions()))]}))
`
/** A database created by this venv's MLflow (its store initialises the schema to its head). */
function createWith(python: string, url: string, artifacts: string) {
  execFileSync(
    python,
    [
      '-c',
      `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; SqlAlchemyStore(${JSON.stringify(url)}, ${JSON.stringify(artifacts)})`,
    ],
    {stdio: 'pipe'},
  )
}

describe('migration catalog vs installed MLflow', () => {
  it('every test venv has exactly the head and chain the catalog gives its version', (t) => {
    if (!requireService(t, venvs.length > 0, NO_VENVS)) return
    for (const venv of venvs) {
      const installed = JSON.parse(
        execFileSync(venv.python, ['-c', INSTALLED], {encoding: 'utf8'}).trim().split('\n').at(-1)!,
      )
      const release = findRelease(catalog, venv.mlflowVersion)
      assert.equal(release.trackingHead, installed.head, venv.mlflowVersion)
      assert.deepEqual(
        chainTo(catalog.tracking, release.trackingHead),
        installed.chain,
        `${venv.mlflowVersion}: the chain`,
      )
    }
  })
})

describe('the schema a restore accepts is exactly what real MLflow makes', () => {
  it("a fresh database of every test venv, and one created by the oldest and upgraded by the newest: no object that is not MLflow's, no table missing", async (t) => {
    if (!requireService(t, Boolean(oldest && newest && oldest !== newest), NO_VENVS)) return
    // Given databases made by real MLflow at each venv's head, and one migrated across the versions
    const dir = tempDir('schema-objects-')
    const files: string[] = []
    for (const venv of venvs) {
      const file = join(dir, `${venv.mlflowVersion}.db`)
      createWith(venv.python, `sqlite:///${file}`, join(dir, 'artifacts'))
      files.push(file)
    }
    const migrated = join(dir, 'migrated.db')
    createWith(oldest.python, `sqlite:///${migrated}`, join(dir, 'artifacts'))
    const mlflowCli = join(newest!.python, '..', 'mlflow')
    execFileSync(mlflowCli, ['db', 'upgrade', `sqlite:///${migrated}`], {stdio: 'pipe'})
    files.push(migrated)
    const overlay = JSON.parse(readFileSync(new URL('../../catalog/overlay.json', import.meta.url), 'utf8'))
    for (const file of files) {
      const db = new Database(file, {readonly: true})
      const revision = (db.prepare('SELECT version_num FROM alembic_version').get() as {version_num: string})
        .version_num
      const objects = db
        .prepare("SELECT type, name, tbl_name AS 'table', sql FROM sqlite_master")
        .all() as SchemaObject[]
      db.close()
      // When the catalog says what MLflow makes at that revision
      const schema = expectedSchema(catalog, overlay, revision)
      // Then every object is MLflow's and no table is missing
      assert.ok(schema, `${file}: revision ${revision} is known`)
      assert.deepEqual(foreignObjects(objects, schema!), [], file)
      assert.deepEqual(missingTables(objects, schema!), [], file)
      assert.ok(
        objects.some((o) => o.type === 'table' && o.name === 'experiments'),
        'a real schema was read',
      )
    }
  })
})

describe('mlflowctl db status', () => {
  it('places SQLite databases that real MLflow made: behind with the exact slice, current, foreign, empty, ahead', async (t) => {
    if (!requireService(t, Boolean(oldest && newest && oldest !== newest), NO_VENVS)) return
    const dir = join(tempDir('db-status-'), 'data')
    mkdirSync(dir, {recursive: true})
    createWith(oldest.python, `sqlite:///${join(dir, 'mlflow.db')}`, join(dir, 'artifacts'))
    const status = (args: string[]) => runCli(['db', 'status', ...args, '--json'])

    const behind = await status(['--db', dir, '--to', newest!.mlflowVersion])
    assert.equal(behind.code, 0, behind.stdout)
    const chain = chainTo(catalog.tracking, findRelease(catalog, newest!.mlflowVersion).trackingHead)
    const from = findRelease(catalog, oldest.mlflowVersion).trackingHead
    assert.equal(behind.json!.result.kind, 'behind')
    assert.ok(behind.json!.result.matchingReleases.includes(oldest.mlflowVersion))
    assert.deepEqual(
      behind.json!.result.pending.map((p: {revision: string}) => p.revision),
      chain.slice(chain.indexOf(from) + 1),
    )
    const human = await runCli([
      'db',
      'status',
      '--db',
      `sqlite:///${join(dir, 'mlflow.db')}`,
      '--to',
      newest!.mlflowVersion,
    ])
    assert.match(human.stdout, /State: behind\. \d+ migrations to MLflow/)

    const ahead = await status(['--db', dir, '--to', '1.30.0'])
    assert.equal(ahead.json!.result.kind, 'ahead')

    const db = new Database(join(dir, 'mlflow.db'))
    db.prepare("UPDATE alembic_version SET version_num = 'v3.0.0.d'").run() // Optuna's revision scheme
    db.close()
    assert.equal((await status(['--db', dir])).json!.result.kind, 'foreign-alembic')

    const empty = join(tempDir('db-status-empty-'), 'empty.db')
    writeFileSync(empty, '')
    assert.equal((await status(['--db', `sqlite:///${empty}`])).json!.result.kind, 'empty')
    const unknown = await status(['--db', dir, '--to', '9.9.9'])
    assert.equal(unknown.json!.error!.code, 'VERSION_UNKNOWN')
    assert.equal(unknown.code, 2)
  })

  it('reads PostgreSQL with row estimates from the statistics, not COUNT(*)', async (t) => {
    if (!requireService(t, Boolean(newest), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const url = await createPgDatabase('mlflow_db_status')
    createWith(newest!.python, url, tempDir('db-status-pg-artifacts-'))
    execFileSync(
      'psql',
      [
        url,
        '-q',
        '-c',
        "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES ('e', 'x', 'active', 0, 0)",
        '-c',
        'ANALYZE',
      ],
      {stdio: 'pipe'},
    )
    const result = await runCli(['db', 'status', '--db', url, '--to', newest!.mlflowVersion, '--json'])
    assert.equal(result.code, 0, result.stdout)
    assert.equal(result.json!.result.kind, 'current')
    assert.ok(!result.stdout.includes('mlflowctl-ci'), 'the password is masked')
  })
})
