// `db migrate` on database files and PostgreSQL with real MLflow: dry run, rehearsal on a copy, the backup gate,
// refusals (a failed rehearsal, a database ahead, a foreign revision).
// test-pool: background (no deadline here that a slow, busy machine could miss: the CLI calls get 15 minutes)
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'
import pg from 'pg'

import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService} from '../support/services.js'
import {cli, newest, last2} from '../support/upgrade-bed.js'
import {tempDir} from '../support/cli.js'

describe('db migrate on a database file (real MLflow)', () => {
  async function oldDatabase(): Promise<string> {
    const dir = tempDir('migrate-db-')
    const {execFileSync} = await import('node:child_process')
    execFileSync(last2!.python, [
      '-c',
      `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\ns = SqlAlchemyStore("sqlite:///${dir}/mlflow.db", "${dir}/artifacts")\ns.create_experiment("kept")`,
    ])
    return dir
  }
  const revisionOf = (dir: string) =>
    (
      new Database(join(dir, 'mlflow.db'), {readonly: true})
        .prepare('SELECT version_num FROM alembic_version')
        .get() as {version_num: string}
    ).version_num

  it('dry run, rehearsal, the backup gate and the migration itself', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const dir = await oldDatabase()
    const start = revisionOf(dir)
    const dry = await cli(['db', 'migrate', '--db', dir, '--to', newest!.mlflowVersion, '--dry-run'])
    assert.equal(dry.code, 0, dry.stdout)
    assert.equal(dry.json!.result.pending[0].revision, '400f98739977')
    const rehearsed = await cli([
      'db',
      'migrate',
      '--db',
      dir,
      '--to',
      newest!.mlflowVersion,
      '--dry-run',
      '--rehearse',
    ])
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
    if (!requireService(t, Boolean(newest && last2), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG))
      return
    const url = await createPgDatabase('mlflowctl_migrate_pg')
    const {execFileSync} = await import('node:child_process')
    execFileSync(
      last2!.python,
      [
        '-c',
        'import os\nfrom mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\nSqlAlchemyStore(os.environ["URL"], "/tmp").create_experiment("kept")',
      ],
      {env: {...process.env, URL: url}},
    )
    const rehearsed = await cli([
      'db',
      'migrate',
      '--db',
      url,
      '--to',
      newest!.mlflowVersion,
      '--rehearse',
      '--dry-run',
    ])
    assert.equal(rehearsed.code, 0, `${rehearsed.stdout}\n${rehearsed.stderr}`)
    assert.equal(rehearsed.json!.result.rehearsal.ok, true)
    assert.match(rehearsed.json!.result.rehearsal.copiedFrom, /scratch database loaded from backup/)
    assert.ok(
      !rehearsed.stdout.includes('mlflowctl-ci') && !rehearsed.stderr.includes('mlflowctl-ci'),
      'the password stays out',
    )
    const client = new pg.Client({connectionString: url})
    await client.connect()
    const {rows} = await client.query('SELECT version_num FROM alembic_version')
    const scratch = await client.query(
      "SELECT datname FROM pg_database WHERE datname LIKE 'mlflowctl_rehearse_%' OR datname LIKE 'mlflowctl_fresh_%'",
    )
    await client.end()
    assert.equal(rows[0].version_num, rehearsed.json!.result.status.revision, 'the source database was not migrated')
    assert.deepEqual(scratch.rows, [], 'the scratch databases were dropped')
  })
})
