// Upgrades that fail (a migration that fails, on PostgreSQL and part-way on SQLite; a bundle that crashes, on the
// same SQLite deployment after that; no drafts on an old Connect): each must end rolled back with the data exactly
// as before. A verification that fails is in upgrade-matrix-older.test.ts, from each older source on both engines.
import assert from 'node:assert/strict'
import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'
import pg from 'pg'

import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService} from '../support/services.js'
import {
  fake,
  env,
  cli,
  newest,
  last2,
  deployRelease,
  writeData,
  servedRevision,
  sqliteOf,
  expectRolledBack,
  clientOf,
  type Deployment,
} from '../support/upgrade-bed.js'
import {runCli, tempDir} from '../support/cli.js'
import {serverSnapshot} from '../support/mlflow-client.js'

describe('upgrade rollback (fake Connect, real MLflow)', () => {
  it('PostgreSQL: a migration that fails (a conflicting index) ends rolled back', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG))
      return
    const url = await createPgDatabase('mlflowctl_upgrade_pg_fail')
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-pg-fail', {
      mode: 'custom',
      env: [`MLFLOW_BACKEND_STORE_URI=${url}`, `MLFLOW_ARTIFACTS_DESTINATION=${tempDir('upgrade-pg-artifacts-')}`],
    })
    const before = await writeData(deployment)
    const revision = await servedRevision(deployment.guid)
    const client = new pg.Client({connectionString: url})
    await client.connect()
    // 3.0.0's first migration creates this index; an object of the same name makes it fail.
    await client.query('CREATE INDEX index_logged_model_metrics_model_id ON runs (run_uuid)')
    await client.end()
    const result = await cli([
      'upgrade',
      'apply',
      '--guid',
      deployment.guid,
      '--to',
      newest!.mlflowVersion,
      '--yes',
      '--db',
      url,
    ])
    // PostgreSQL runs the whole migration in one transaction: the failure left nothing to restore.
    await expectRolledBack(deployment, before, revision, result, false)
    assert.ok(
      !result.stdout.includes('mlflowctl-ci') && !result.stderr.includes('mlflowctl-ci'),
      'the database password stays out',
    )
    const ledger = readFileSync(join(env.MLFLOWCTL_DATA_DIR, 'history.jsonl'), 'utf8')
    assert.ok(!ledger.includes('mlflowctl-ci') && !ledger.includes(PUBLISHER_KEY), 'and out of the history ledger')
  })

  it('local SQLite: a migration that fails part-way (a conflicting index), then a bundle that crashes after it migrated: each ends rolled back', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-sqlite-fails')
    const before = await writeData(deployment)
    const revision = await servedRevision(deployment.guid)
    const db = new Database(sqliteOf(deployment.guid))
    db.exec('CREATE INDEX index_logged_model_metrics_model_id ON runs (run_uuid)')
    db.close()
    const failed = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    await expectRolledBack(deployment, before, revision, failed)
    const restored = new Database(sqliteOf(deployment.guid))
    const tables = restored
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'logged_models'")
      .all()
    assert.deepEqual(tables, [], 'the tables the failed migration created are gone')
    // The restore brought the conflicting index back with the rest; without it the migration goes through, and
    // the bundle then crashes.
    restored.exec('DROP INDEX index_logged_model_metrics_model_id')
    restored.close()
    fake.crashAfterStart.add(deployment.guid)
    const crashed = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    await expectRolledBack(deployment, before, revision, crashed)
  })

  it('without drafts (Connect < 2025.06): an activated bundle that fails verification ends rolled back (held restore)', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const oldConnect = await startFakeConnect({version: '2025.5.0'})
    const oldEnv = {...env, CONNECT_SERVER: oldConnect.url}
    const dir = join(tempDir(), 'no-drafts')
    assert.equal((await runCli(['init', dir, '--mlflow-version', last2!.mlflowVersion])).code, 0)
    const deployed = await runCli(['deploy', dir, '--new', '--name', 'upgrade-no-drafts', '--json'], {env: oldEnv})
    assert.equal(deployed.code, 0, deployed.stdout)
    const deployment: Deployment = {
      guid: deployed.json!.result.guid,
      contentUrl: deployed.json!.result.contentUrl,
      bundleId: deployed.json!.result.bundleId,
      python: last2!.python,
    }
    const before = await writeData(deployment)
    oldConnect.content.get(deployment.guid)!.env.set('MLFLOW_SERVER_ALLOWED_HOSTS', 'mlflow.example.invalid')
    const result = await runCli(
      ['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes', '--json'],
      {env: oldEnv, timeoutMs: 900_000},
    )
    assert.equal(result.code, 6, `${result.stdout}\n${result.stderr}`)
    assert.equal(result.json!.error!.code, 'UPGRADE_ROLLED_BACK', result.json!.error!.message)
    assert.match(
      result.json!.error!.message,
      /restored into the activated bundle \d+ \(held\)/,
      'the data went into the activated bundle, held, before the previous bundle came back',
    )
    assert.equal(oldConnect.content.get(deployment.guid)!.activeBundle, deployment.bundleId)
    assert.deepEqual(
      await serverSnapshot(clientOf(deployment.python, deployment)),
      before,
      'the data is exactly as before',
    )
    const dataDir = join(oldConnect.options.workDir, 'data', deployment.guid)
    assert.ok(!readdirSync(dataDir).includes('.mlflowctl-held'), 'the previous bundle took the hold over')
  })
})
