// The fault suite, second round: archives that are internally consistent but hostile, names a file
// system allows, passphrases without --encrypt, and the refusals that must carry their own code instead of exit 1.
// Every backup here is made by real MLflow; every forged one has its manifest and sidecar rewritten to match.
// test-pool: background (no deadline here that a slow, busy machine could miss: each CLI call may take minutes)
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {before, describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {makeMlflowData} from '../support/mlflow-data.js'
import {archiveAlone, forgeBackup} from '../support/forge.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService, testVenvs} from '../support/services.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const GUARD = fileURLToPath(new URL('../../templates/tools/', import.meta.url))

const cli = (args: string[], env: Record<string, string> = {}, timeoutMs?: number) =>
  runCli([...args, '--json'], {env, timeoutMs})

function rows(db: string, sql: string): number {
  const handle = new Database(db, {readonly: true})
  try {
    return handle.prepare(sql).pluck().get() as number
  } finally {
    handle.close()
  }
}

describe('backup faults, second round: hostile archives and odd inputs', () => {
  const work = tempDir('hostile-')
  const data = join(work, 'source', 'data')
  const repo = join(work, 'repo')
  let id = ''
  let metrics = 0

  before(async () => {
    if (!venv) return
    makeMlflowData(venv.python, data, 'hostile', 2, 1)
    metrics = rows(join(data, 'mlflow.db'), 'SELECT count(*) FROM metrics')
    const created = await cli(['backup', 'create', '--source', data, '--repo', repo])
    assert.equal(created.code, 0, created.stdout)
    id = created.json!.result.id
  })

  /** A copy of the source data directory to change. */
  function dataCopy(): string {
    const copy = join(tempDir('hostile-data-'), 'data')
    cpSync(data, copy, {recursive: true})
    return copy
  }

  it('item 3: names that differ by a backslash, and one that is not UTF-8: kept byte for byte, or skipped by name', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Given artifacts twin/a/b.txt and twin/a\b.txt (one file each on Linux), and a name with byte 0xff
    const source = dataCopy()
    mkdirSync(join(source, 'artifacts', 'twin', 'a'), {recursive: true})
    writeFileSync(join(source, 'artifacts', 'twin', 'a', 'b.txt'), 'under a directory')
    writeFileSync(join(source, 'artifacts', 'twin', 'a\\b.txt'), 'one name with a backslash')
    writeFileSync(Buffer.from(`${join(source, 'artifacts', 'twin')}/bad\xff.bin`, 'latin1'), 'x')
    const twinRepo = join(tempDir('twin-repo-'), 'repo')
    // When they are backed up, verified and restored
    const created = await cli(['backup', 'create', '--source', source, '--repo', twinRepo])
    assert.equal(created.code, 0, created.stdout)
    assert.match(
      created.json!.warnings!.join('\n'),
      /skipped artifacts\/twin\/bad\\xff\.bin: its name is not valid UTF-8/,
    )
    const verified = await cli(['backup', 'verify', created.json!.result.id, '--repo', twinRepo])
    assert.equal(verified.code, 0, verified.stdout)
    const target = join(tempDir('twin-target-'), 'data')
    const restored = await cli(['backup', 'restore', created.json!.result.id, '--repo', twinRepo, '--to', target])
    // Then both twins come back with their own bytes
    assert.equal(restored.code, 0, restored.stdout)
    assert.equal(readFileSync(join(target, 'artifacts', 'twin', 'a', 'b.txt'), 'utf8'), 'under a directory')
    assert.equal(readFileSync(join(target, 'artifacts', 'twin', 'a\\b.txt'), 'utf8'), 'one name with a backslash')
  })

  it("item 4: a trigger that deletes every metric on the restore's own rewrite is refused, naming it; dropped on request", async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Given an unencrypted backup whose database carries a trigger, its manifest and sidecar fixed to match
    const forged = join(tempDir('forged-trigger-'), 'repo')
    mkdirSync(forged)
    await forgeBackup(repo, id, forged, {
      sql: 'CREATE TRIGGER wipe AFTER UPDATE ON experiments BEGIN DELETE FROM metrics; END',
    })
    // When it is restored somewhere else (so the experiments' artifact locations are rewritten)
    const target = join(tempDir('forged-target-'), 'data')
    const refused = await cli(['backup', 'restore', id, '--repo', forged, '--to', target])
    // Then it is refused before anything is replaced, the trigger named
    assert.equal(refused.code, 6, refused.stdout)
    assert.equal(refused.json!.error!.code, 'BACKUP_SCHEMA_FOREIGN')
    assert.match(refused.json!.error!.message, /trigger wipe on experiments/)
    assert.match(refused.json!.error!.suggestions.join(), /--drop-foreign-objects/)
    assert.ok(!existsSync(join(target, 'mlflow.db')), 'nothing restored')
    // And with --drop-foreign-objects the trigger is left out and named, and every metric is there
    const dropped = await cli(['backup', 'restore', id, '--repo', forged, '--to', target, '--drop-foreign-objects'])
    assert.equal(dropped.code, 0, dropped.stdout)
    assert.deepEqual(dropped.json!.result.droppedObjects, ['trigger wipe on experiments'])
    assert.ok(dropped.json!.result.artifactLocations.total > 0, 'the rewrite ran')
    assert.equal(rows(join(target, 'mlflow.db'), 'SELECT count(*) FROM metrics'), metrics)
    assert.equal(
      rows(join(target, 'mlflow.db'), "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'wipe'"),
      0,
    )
  })

  it('item 4: a view that stands where an MLflow table belongs, and another table, are refused by name', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const forged = join(tempDir('forged-view-'), 'repo')
    mkdirSync(forged)
    await forgeBackup(repo, id, forged, {
      sql: 'ALTER TABLE params RENAME TO params_real; CREATE VIEW params AS SELECT * FROM params_real',
    })
    const refused = await cli(['backup', 'restore', id, '--repo', forged, '--to', join(tempDir('view-'), 'data')])
    assert.equal(refused.code, 6, refused.stdout)
    assert.equal(refused.json!.error!.code, 'BACKUP_SCHEMA_FOREIGN')
    assert.match(refused.json!.error!.message, /view params \(a view where MLflow's table params belongs/)
    assert.match(refused.json!.error!.message, /table params_real \(not one of MLflow's tables/)
  })

  it('item 5: a passphrase in any form encrypts; --no-encrypt beside --passphrase-file is refused', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const secret = join(work, 'passphrase')
    writeFileSync(secret, 'a passphrase given as a file\n')
    const encryptedRepo = join(tempDir('implied-'), 'repo')
    for (const [args, env] of [
      [['--passphrase-file', secret], {}],
      [[], {MLFLOWCTL_BACKUP_PASSPHRASE: 'a passphrase given in the environment'}],
    ] as const) {
      // When a passphrase is given without --encrypt
      const created = await cli(['backup', 'create', '--source', data, '--repo', encryptedRepo, ...args], {...env})
      assert.equal(created.code, 0, created.stdout)
      // Then the archive is encrypted: it cannot be read without the passphrase
      const noPassphrase = await cli(['backup', 'verify', created.json!.result.id, '--repo', encryptedRepo], {
        MLFLOWCTL_BACKUP_PASSPHRASE: '',
      })
      assert.equal(noPassphrase.code, 3, noPassphrase.stdout)
      assert.equal(noPassphrase.json!.error!.code, 'PASSPHRASE_REQUIRED')
      const archive = readdirSync(encryptedRepo).find(
        (n) => n.startsWith(created.json!.result.id) && n.endsWith('.gz'),
      )!
      assert.equal(readFileSync(join(encryptedRepo, archive)).subarray(0, 8).toString(), 'MLFCENC1')
    }
    const conflict = await cli([
      'backup',
      'create',
      '--source',
      data,
      '--repo',
      encryptedRepo,
      '--no-encrypt',
      '--passphrase-file',
      secret,
    ])
    assert.equal(conflict.code, 2, conflict.stdout)
    assert.equal(conflict.json!.error!.code, 'ENCRYPT_CONFLICT')
  })

  it('item 7: a backup at a schema revision this MLflow does not know is refused for a SQLite target too', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const forged = join(tempDir('forged-revision-'), 'repo')
    mkdirSync(forged)
    await forgeBackup(repo, id, forged, {
      sql: "UPDATE alembic_version SET version_num = 'ffffffffffff'",
      manifest: (manifest) => ({...manifest, alembicRevision: 'ffffffffffff'}),
    })
    const db = join(tempDir('revision-target-'), 'mlflow.db')
    const refused = await cli(['backup', 'restore', id, '--repo', forged, '--to', `sqlite:///${db}`])
    assert.equal(refused.code, 6, refused.stdout)
    assert.equal(refused.json!.error!.code, 'BACKUP_REVISION_UNKNOWN')
    assert.match(refused.json!.error!.message, /ffffffffffff/)
    assert.ok(!existsSync(db), 'nothing restored')
  })

  it('item 8: an encrypted header that asks scrypt for minutes of work is refused before deriving', async () => {
    // Given 58 bytes: the magic, N = 2^20, r = 32, p = 16, a salt, an IV and a tag, nothing else
    const file = join(tempDir('scrypt-'), 'x.mlflowctl-backup.tar.gz')
    const header = Buffer.alloc(42)
    Buffer.from('MLFCENC1').copy(header, 0)
    header.writeUInt32BE(2 ** 20, 8)
    header.writeUInt8(32, 12)
    header.writeUInt8(16, 13)
    writeFileSync(file, Buffer.concat([header, Buffer.alloc(16)]))
    const env = {MLFLOWCTL_BACKUP_PASSPHRASE: 'any'}
    // When it is verified or restored (the 60 s limit only stops a hang: the old code ran for minutes)
    for (const args of [
      ['backup', 'verify', file],
      ['backup', 'restore', file, '--to', join(tempDir('scrypt-target-'), 'data')],
    ]) {
      const result = await cli(args, env, 60_000)
      // Then it is a damaged archive, named as such
      assert.equal(result.code, 6, `${args[1]}: ${result.stdout}`)
      assert.equal(result.json!.error!.code, 'BACKUP_CORRUPT')
      assert.match(result.json!.error!.message, /N=1048576, r=32, p=16/)
    }
  })

  it('item 9: a store with a table named odd"name backs up (the table left out and named) and restores', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const source = dataCopy()
    const handle = new Database(join(source, 'mlflow.db'))
    handle.exec('CREATE TABLE "odd""name" (x); INSERT INTO "odd""name" VALUES (1)')
    handle.close()
    const oddRepo = join(tempDir('odd-repo-'), 'repo')
    const created = await cli(['backup', 'create', '--source', source, '--repo', oddRepo])
    assert.equal(created.code, 0, created.stdout)
    assert.match(created.json!.warnings!.join(), /left out 1 objects that are not MLflow's: table odd"name/)
    const restored = await cli([
      'backup',
      'restore',
      'latest',
      '--repo',
      oddRepo,
      '--to',
      join(tempDir('odd-'), 'data'),
    ])
    assert.equal(restored.code, 0, restored.stdout)
  })

  it("item 10: a PostgreSQL restore of an archive with another application's table is refused by name (exit 6), dropped on request", async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    // Given a backup of a PostgreSQL store, forged to carry a table "customers" (its COPY file and schema entry)
    const source = await createPgDatabase('mlflowctl_hostile_source')
    assert.equal((await cli(['backup', 'restore', id, '--repo', repo, '--to', source])).code, 0)
    const pgRepo = join(tempDir('pg-repo-'), 'repo')
    const pgBackup = await cli(['backup', 'create', '--source', source, '--repo', pgRepo])
    assert.equal(pgBackup.code, 0, pgBackup.stdout)
    const pgId = pgBackup.json!.result.id
    const forged = join(tempDir('forged-pg-'), 'repo')
    mkdirSync(forged)
    await forgeBackup(pgRepo, pgId, forged, {
      entries: [{name: 'db/customers.copy', data: Buffer.from('1\tacme\n')}],
      edit: {
        'db/schema.json': (data) => {
          const schema = JSON.parse(data.toString())
          schema.tables.push({
            name: 'customers',
            columns: [
              {name: 'id', type: 'integer'},
              {name: 'name', type: 'text'},
            ],
          })
          return Buffer.from(JSON.stringify(schema))
        },
      },
      manifest: (manifest) => ({...manifest, rowCounts: {...manifest.rowCounts, customers: 1}}),
    })
    // When it is restored into another PostgreSQL database
    const target = await createPgDatabase('mlflowctl_hostile_target')
    const refused = await cli(['backup', 'restore', pgId, '--repo', forged, '--to', target])
    // Then the foreign table is refused by name, not an internal error
    assert.equal(refused.code, 6, refused.stdout)
    assert.equal(refused.json!.error!.code, 'BACKUP_SCHEMA_FOREIGN')
    assert.match(refused.json!.error!.message, /table customers/)
    const dropped = await cli(['backup', 'restore', pgId, '--repo', forged, '--to', target, '--drop-foreign-objects'])
    assert.equal(dropped.code, 0, dropped.stdout)
    assert.deepEqual(dropped.json!.result.droppedObjects, ['table customers'])
    assert.ok(!dropped.stdout.includes('mlflowctl-ci'), 'no password in the output')
  })

  it('item 11: a replica whose snapshot.json is not valid JSON is REPLICA_CORRUPT (exit 6)', async () => {
    const replica = tempDir('bad-replica-')
    writeFileSync(join(replica, 'mlflowctl-replica.json'), '{}')
    mkdirSync(join(replica, 'generations', '20261206T000000Z-abcdef'), {recursive: true})
    writeFileSync(join(replica, 'generations', '20261206T000000Z-abcdef', 'snapshot.json'), '{"sha256": "ab", ')
    const result = await cli(['backup', 'restore', '--from-replica', replica, '--to', join(tempDir('r-'), 'data')])
    assert.equal(result.code, 6, result.stdout)
    assert.equal(result.json!.error!.code, 'REPLICA_CORRUPT')
    assert.match(result.json!.error!.message, /snapshot\.json is not valid JSON/)
  })

  it("item 12: verify of a directory is NOT_A_BACKUP (exit 6); a source whose mlflow.db is text is not MLflow's (exit 3)", async () => {
    const dir = tempDir('verify-dir-')
    const verified = await cli(['backup', 'verify', dir])
    assert.equal(verified.code, 6, verified.stdout)
    assert.equal(verified.json!.error!.code, 'NOT_A_BACKUP')
    const source = join(tempDir('text-db-'), 'data')
    mkdirSync(source)
    writeFileSync(join(source, 'mlflow.db'), 'these are notes, not a database\n')
    const created = await cli(['backup', 'create', '--source', source, '--repo', join(dir, 'repo')])
    assert.equal(created.code, 3, created.stdout)
    assert.equal(created.json!.error!.code, 'SOURCE_NOT_MLFLOW')
    assert.match(created.json!.error!.message, /not a SQLite file/)
  })

  it('an intact archive copied without its sidecar verifies on its own contents (exit 0, the missing listing said)', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const copy = archiveAlone(repo, id, tempDir('alone-'))
    const result = await cli(['backup', 'verify', copy])
    assert.equal(result.code, 0, result.stdout)
    assert.match(result.json!.warnings!.join(), /does not list it/)
  })

  it("the restore loader dies with a CLI that was killed while Python still imported: it guards the CLI's PID, not init", () => {
    // Given a loader started by a CLI that is already gone (its PID written into MLFLOWCTL_PARENT_PID)
    const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], {encoding: 'utf8'})
    const deadPid = gone.stdout.trim()
    const script = `import sys, time\nsys.path.insert(0, ${JSON.stringify(GUARD)})\nfrom parent_guard import die_with_parent\ndie_with_parent()\ntime.sleep(5)\nprint("survived")`
    // When its guard starts
    const loader = spawnSync('python3', ['-c', script], {
      encoding: 'utf8',
      env: {...process.env, MLFLOWCTL_PARENT_PID: deadPid},
      timeout: 30_000,
    })
    // Then it exits at once instead of living on
    assert.equal(loader.status, 137, loader.stdout + loader.stderr)
    assert.ok(!loader.stdout.includes('survived'))
  })

  it("the old database's -wal and -shm go aside before the new database goes in (no opener pairs them)", async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Given a target whose database has journal files beside it
    const target = dataCopy()
    writeFileSync(join(target, 'mlflow.db-wal'), 'old frames')
    writeFileSync(join(target, 'mlflow.db-shm'), 'old index')
    // When a restore is stopped just after the new database went in
    const child = spawnSync(
      process.execPath,
      [RUN, 'backup', 'restore', id, '--repo', repo, '--to', target, '--force', '--yes'],
      {env: {...process.env, MLFLOWCTL_FAULT_AT: 'restore:in:mlflow.db'}, encoding: 'utf8'},
    )
    assert.equal(child.signal, 'SIGKILL', child.stderr)
    // Then the new database stands alone: the old -wal and -shm were already aside
    assert.ok(existsSync(join(target, 'mlflow.db')))
    assert.ok(!existsSync(join(target, 'mlflow.db-wal')) && !existsSync(join(target, 'mlflow.db-shm')))
    // And the next run undoes it, the journal files back beside the old database
    const next = await cli(['backup', 'create', '--source', target, '--repo', join(work, 'wal-next')])
    assert.equal(next.code, 0, next.stdout)
    assert.match(next.json!.warnings!.join(), /undid an interrupted restore/)
    assert.equal(readFileSync(join(target, 'mlflow.db-wal'), 'utf8'), 'old frames')
  })
})
