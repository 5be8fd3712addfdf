// Snapshot repositories against real MLflow data: a second backup reads only what changed and adds almost nothing,
// a file whose size and mtime are unchanged is referenced unread (and --force-read rereads it), restore and verify
// read snapshots like archives, prune collects garbage, encryption seals every object, and a kill at any step of
// create or prune leaves every listed snapshot whole and only unreferenced data, which the next prune removes.
import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {before, describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {makeMlflowData} from '../support/mlflow-data.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService, testVenvs} from '../support/services.js'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const PASSPHRASE = {MLFLOWCTL_BACKUP_PASSPHRASE: 'snapshot suite passphrase'}

const cli = (args: string[], env: Record<string, string> = {}) => runCli([...args, '--json'], {env})
const ok = async (args: string[], env: Record<string, string> = {}) => {
  const result = await cli(args, env)
  assert.equal(result.code, 0, `${args.join(' ')}: ${result.stdout}\n${result.stderr.slice(-1500)}`)
  return result.json!.result
}

async function killedAt(step: string, args: string[]): Promise<void> {
  const child = spawn(process.execPath, [RUN, ...args], {
    env: {...process.env, MLFLOWCTL_FAULT_AT: step},
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)))
  assert.equal(signal, 'SIGKILL', `expected a kill at ${step}; it ran to the end: ${stderr.slice(-600)}`)
}

/** Every file under `dir`, relative path → SHA-256. */
function tree(dir: string, prefix = ''): Map<string, string> {
  const found = new Map<string, string>()
  if (!existsSync(dir)) return found
  for (const entry of readdirSync(dir, {withFileTypes: true})) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) for (const [key, value] of tree(path, `${prefix}${entry.name}/`)) found.set(key, value)
    else found.set(`${prefix}${entry.name}`, createHash('sha256').update(readFileSync(path)).digest('hex'))
  }
  return found
}

/** What the repository holds on disk: packs, index files and snapshot documents. */
function layout(repo: string) {
  const count = (dir: string) => [...tree(join(repo, dir)).keys()]
  const packs = count('data')
  return {
    packs: packs.length,
    packBytes: packs.reduce((sum, key) => sum + statSync(join(repo, 'data', key)).size, 0),
    indexes: count('index').length,
    snapshots: count('snapshots').length,
  }
}

const experiments = (db: string) => {
  const handle = new Database(db, {readonly: true})
  try {
    return (handle.prepare('SELECT name FROM experiments ORDER BY name').all() as Array<{name: string}>).map(
      (r) => r.name,
    )
  } finally {
    handle.close()
  }
}

const listed = async (repo: string, env: Record<string, string> = {}) =>
  (await ok(['backup', 'list', '--repo', repo], env)).backups as Array<{id: string; kind: string; bytes: number}>

/** Every listed snapshot reads back whole: every blob against its ID, every file against the manifest. */
async function everySnapshotReads(repo: string, context: string) {
  for (const backup of await listed(repo)) {
    const read = await cli(['backup', 'verify', backup.id, '--repo', repo, '--read-data'])
    assert.equal(
      read.code,
      0,
      `${context}: ${backup.id} must read back whole: ${read.stdout}${read.stderr.slice(-800)}`,
    )
  }
}

describe('snapshot repositories (deduplicated, incremental)', () => {
  const work = tempDir('snapshots-')
  const source = join(work, 'source', 'data')

  before(() => {
    if (!venv) return
    makeMlflowData(venv.python, source, 'first', 3, 6)
    // A weights file large enough for several chunks: the packs then hold more than one blob per file.
    writeFileSync(join(source, 'artifacts', 'first', 'weights.bin'), randomBytes(3 * 1024 * 1024))
  })

  it('a second backup reads nothing and adds almost nothing; new runs add about their own size; restore gives back the store', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = join(work, 'incremental')
    const first = await ok(['backup', 'create', '--source', source, '--repo', repo])
    assert.equal(first.format, 'snapshot')
    assert.equal(first.path, join(repo, 'snapshots', `${first.id}.json`))
    assert.equal(JSON.parse(readFileSync(join(repo, 'config.json'), 'utf8')).format, 'snapshot')
    const files = tree(source).size
    assert.equal(first.snapshot.filesNew, files)

    const second = await ok(['backup', 'create', '--source', source, '--repo', repo])
    assert.equal(second.snapshot.parent, first.id)
    assert.equal(second.snapshot.filesNew, 0, 'nothing changed, so nothing is read (the database is not even copied)')
    assert.equal(second.snapshot.bytesRead, 0)
    assert.equal(second.snapshot.blobsAdded, 0)
    assert.ok(
      second.snapshot.bytesAdded < first.snapshot.bytesAdded * 0.01,
      `${second.snapshot.bytesAdded} added against ${first.snapshot.bytesAdded}`,
    )

    makeMlflowData(venv!.python, source, 'second', 2, 4)
    const third = await ok(['backup', 'create', '--source', source, '--repo', repo])
    // The database changed, and 2 runs × 4 new files: only those are read.
    assert.equal(third.snapshot.filesNew, 1 + 8)
    assert.equal(third.snapshot.filesUnchanged, files - 1)
    const kinds = (await listed(repo)).map((b) => b.kind)
    assert.deepEqual(kinds, ['snapshot', 'snapshot', 'snapshot'])

    const target = join(tempDir('snapshot-restore-'), 'data')
    await ok(['backup', 'restore', 'latest', '--repo', repo, '--to', target, '--yes'])
    assert.deepEqual(experiments(join(target, 'mlflow.db')), experiments(join(source, 'mlflow.db')))
    assert.deepEqual(tree(join(target, 'artifacts')), tree(join(source, 'artifacts')))
    // An older snapshot restores its own state: the second experiment did not exist yet.
    const older = join(tempDir('snapshot-restore-'), 'data')
    await ok(['backup', 'restore', first.id, '--repo', repo, '--to', older, '--yes'])
    assert.ok(!experiments(join(older, 'mlflow.db')).includes('second'))
    const deep = await ok(['backup', 'verify', 'latest', '--repo', repo, '--deep'])
    assert.ok(deep.deep, 'verify --deep restores a snapshot into scratch SQLite')
  })

  it('a rewrite at the same size with its mtime put back is still read (its ctime changed); --force-read rereads all', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const data = join(tempDir('snapshot-mtime-'), 'data')
    cpSync(source, data, {recursive: true})
    const repo = join(work, 'mtime')
    const first = await ok(['backup', 'create', '--source', data, '--repo', repo])
    const file = join(data, 'artifacts', 'first', 'weights.bin')
    // New bytes at the same size, and the old mtime put back to the nanosecond (touch -r), as cp -p or a careless
    // tool might: restic catches it by the ctime, which no tool can put back, and so does mlflowctl.
    const reference = join(tempDir('mtime-reference-'), 'reference')
    writeFileSync(reference, '')
    execFileSync('touch', ['-r', file, reference])
    writeFileSync(file, randomBytes(statSync(file).size))
    execFileSync('touch', ['-r', reference, file])
    const rewritten = await ok(['backup', 'create', '--source', data, '--repo', repo])
    assert.equal(rewritten.snapshot.filesNew, 1, 'only the rewritten file is read')
    assert.ok(rewritten.snapshot.blobsAdded > 0)
    const forced = await ok(['backup', 'create', '--source', data, '--repo', repo, '--force-read'])
    assert.equal(forced.snapshot.filesUnchanged, 0, '--force-read trusts no parent entry')
    assert.equal(forced.snapshot.filesNew, first.snapshot.filesNew)
    // Nothing new is stored: every artifact chunk is in the repository already (a fresh copy of the database may
    // differ in its header's change counter, one chunk).
    assert.ok(forced.snapshot.blobsAdded <= 1, `${forced.snapshot.blobsAdded} blobs added`)
    const target = join(tempDir('snapshot-mtime-restore-'), 'data')
    await ok(['backup', 'restore', 'latest', '--repo', repo, '--to', target, '--yes'])
    assert.deepEqual(readFileSync(join(target, 'artifacts', 'first', 'weights.bin')), readFileSync(file))
  })

  it('verify: quick checks the index and packs, --read-data and a subset read them; damage exits 6', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = join(work, 'damage')
    const id = (await ok(['backup', 'create', '--source', source, '--repo', repo])).id
    assert.equal((await cli(['backup', 'verify', id, '--repo', repo])).code, 0)
    const subset = await cli(['backup', 'verify', id, '--repo', repo, '--read-data-subset', '50%'])
    assert.equal(subset.code, 0, subset.stdout)
    assert.equal(
      (await cli(['backup', 'verify', id, '--repo', repo, '--read-data-subset', 'most'])).json!.error!.code,
      'INVALID_SUBSET',
    )
    const packs = [...tree(join(repo, 'data')).keys()].map((key) => join(repo, 'data', key))
    const biggest = packs.sort((a, b) => statSync(b).size - statSync(a).size)[0]
    const bytes = readFileSync(biggest)
    bytes[Math.floor(bytes.length / 2)] ^= 0xff
    writeFileSync(biggest, bytes)
    assert.equal((await cli(['backup', 'verify', id, '--repo', repo])).code, 0, 'quick: sizes match, data unread')
    for (const flags of [['--read-data'], ['--read-data-subset', '100%']]) {
      const read = await cli(['backup', 'verify', id, '--repo', repo, ...flags])
      assert.equal(read.code, 6, `${flags}: ${read.stdout}`)
      assert.equal(read.json!.error!.code, 'BACKUP_CORRUPT')
    }
    const restore = await cli([
      'backup',
      'restore',
      id,
      '--repo',
      repo,
      '--to',
      join(tempDir('damaged-'), 'data'),
      '--yes',
    ])
    assert.equal(restore.code, 6, 'a restore refuses a damaged snapshot')
    unlinkSync(biggest)
    const missing = await cli(['backup', 'verify', id, '--repo', repo])
    assert.equal(missing.code, 6)
    assert.match(missing.json!.error!.message, /missing/)
  })

  it('encrypted: every object sealed, a wrong or missing passphrase refused, the right one restores', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = join(work, 'sealed')
    const marker = 'first run 0 file 0'
    const id = (await ok(['backup', 'create', '--source', source, '--repo', repo], PASSPHRASE)).id
    for (const [path] of tree(repo))
      assert.ok(!readFileSync(join(repo, path)).includes(marker), `${path} holds plaintext`)
    assert.equal((await cli(['backup', 'verify', id, '--repo', repo])).json!.error!.code, 'PASSPHRASE_REQUIRED')
    const wrong = await cli(['backup', 'verify', id, '--repo', repo], {MLFLOWCTL_BACKUP_PASSPHRASE: 'wrong'})
    assert.equal(wrong.code, 6)
    assert.equal(wrong.json!.error!.code, 'BACKUP_DECRYPT_FAILED')
    assert.equal((await cli(['backup', 'verify', id, '--repo', repo, '--read-data'], PASSPHRASE)).code, 0)
    const target = join(tempDir('sealed-restore-'), 'data')
    await ok(['backup', 'restore', id, '--repo', repo, '--to', target, '--yes'], PASSPHRASE)
    assert.deepEqual(tree(join(target, 'artifacts')), tree(join(source, 'artifacts')))
    // A plain repository never takes an encrypted snapshot in clear.
    const plain = join(work, 'plain')
    await ok(['backup', 'create', '--source', source, '--repo', plain])
    const refused = await cli(['backup', 'create', '--source', source, '--repo', plain], PASSPHRASE)
    assert.equal(refused.json!.error!.code, 'REPO_NOT_ENCRYPTED')
  })

  it('prune deletes what no kept snapshot needs and rewrites mostly-unneeded packs; the kept ones still read whole', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const data = join(tempDir('snapshot-prune-'), 'data')
    cpSync(source, data, {recursive: true})
    const repo = join(work, 'prune')
    for (let day = 0; day < 3; day++) {
      rmSync(join(data, 'artifacts', 'daily'), {recursive: true, force: true})
      cpSync(join(data, 'artifacts', 'first'), join(data, 'artifacts', 'daily'), {recursive: true})
      writeFileSync(join(data, 'artifacts', 'daily', `day-${day}.bin`), randomBytes(2 * 1024 * 1024))
      await ok(['backup', 'create', '--source', data, '--repo', repo])
    }
    const before = layout(repo)
    const pruned = await ok(['backup', 'prune', '--repo', repo, '--keep-last', '1', '--yes'])
    const after = layout(repo)
    assert.equal(pruned.remove.length, 2)
    assert.equal(after.snapshots, 1)
    assert.equal(after.indexes, 1, 'one index describes what is left')
    // Two days' 2 MiB of random bytes are no longer needed.
    assert.ok(before.packBytes - after.packBytes > 3.5 * 1024 * 1024, `${before.packBytes} → ${after.packBytes}`)
    assert.ok(pruned.data.packsRemoved + pruned.data.packsRewritten > 0)
    await everySnapshotReads(repo, 'after prune')
    const target = join(tempDir('prune-restore-'), 'data')
    await ok(['backup', 'restore', 'latest', '--repo', repo, '--to', target, '--yes'])
    assert.deepEqual(tree(join(target, 'artifacts')), tree(join(data, 'artifacts')))
  })

  it('a kill at each step of create or prune leaves every listed snapshot whole; the next prune removes what it left', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const data = join(tempDir('snapshot-kill-'), 'data')
    cpSync(source, data, {recursive: true})
    const base = join(work, 'kill-base')
    await ok(['backup', 'create', '--source', data, '--repo', base])
    let day = 0
    const addDay = () => writeFileSync(join(data, 'artifacts', 'first', `kill-${day++}.bin`), randomBytes(1024 * 1024))
    for (const step of [
      'create:pack-uploaded',
      'create:packs-uploaded',
      'create:index-written',
      'create:snapshot-written',
    ]) {
      const repo = join(work, `kill-${step.replace(':', '-')}`)
      cpSync(base, repo, {recursive: true})
      const ids = (await listed(repo)).map((b) => b.id)
      addDay()
      await killedAt(step, ['backup', 'create', '--source', data, '--repo', repo])
      const after = (await listed(repo)).map((b) => b.id)
      const left = layout(repo)
      t.diagnostic(`${step}: ${after.length} listed, ${left.packs} packs, ${left.indexes} index files`)
      // Until the snapshot document is written, the killed run's backup is not listed; after it, it is whole.
      assert.equal(after.length, step === 'create:snapshot-written' ? ids.length + 1 : ids.length, step)
      await everySnapshotReads(repo, step)
      await ok(['backup', 'prune', '--repo', repo, '--keep-last', '10', '--yes'])
      const cleaned = layout(repo)
      assert.equal(cleaned.indexes, 1, `${step}: one index after prune`)
      assert.ok(cleaned.packBytes <= left.packBytes, step)
      await everySnapshotReads(repo, `${step}, then prune`)
      const next = await ok(['backup', 'create', '--source', data, '--repo', repo])
      // Read: the database (a kill leaves its WAL behind, so its state changed) and the files added since the base.
      assert.ok(
        next.snapshot.filesNew <= 1 + day,
        `${step}: the next backup reads only what changed (${next.snapshot.filesNew})`,
      )
    }
    // Three snapshots with data of their own, so that prune --keep-last 1 removes, rewrites and deletes packs.
    const many = join(work, 'kill-prune-base')
    cpSync(base, many, {recursive: true})
    for (let i = 0; i < 2; i++) {
      rmSync(join(data, 'artifacts', 'first', `kill-${day - 1}.bin`), {force: true})
      addDay()
      await ok(['backup', 'create', '--source', data, '--repo', many])
    }
    const newest = (await listed(many))[0].id
    for (const step of [
      'prune:snapshot-removed',
      'prune:repacked',
      'prune:index-written',
      'prune:old-index-removed',
      'prune:pack-removed',
    ]) {
      const repo = join(work, `kill-${step.replace(':', '-')}`)
      cpSync(many, repo, {recursive: true})
      await killedAt(step, ['backup', 'prune', '--repo', repo, '--keep-last', '1', '--yes'])
      const left = layout(repo)
      const ids = (await listed(repo)).map((b) => b.id)
      t.diagnostic(`${step}: ${ids.length} listed, ${left.packs} packs, ${left.indexes} index files`)
      assert.ok(ids.includes(newest), `${step}: the kept snapshot stays listed`)
      await everySnapshotReads(repo, step)
      await ok(['backup', 'prune', '--repo', repo, '--keep-last', '1', '--yes'])
      assert.deepEqual(
        (await listed(repo)).map((b) => b.id),
        [newest],
      )
      assert.equal(layout(repo).indexes, 1)
      await everySnapshotReads(repo, `${step}, then prune`)
    }
  })

  it('a WAL-mode database is read in place while a writer commits; every snapshot restores consistent and whole', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const data = join(tempDir('snapshot-live-'), 'data')
    cpSync(source, data, {recursive: true})
    const db = join(data, 'mlflow.db')
    const handle = new Database(db)
    handle.pragma('journal_mode = WAL')
    handle.close()
    const repo = join(work, 'live')
    const quiet = await ok(['backup', 'create', '--source', data, '--repo', repo])
    assert.equal(quiet.snapshot.database, 'read in place', 'a WAL-mode file with nothing writing needs no copy')
    // A writer commits two experiments per transaction: any consistent snapshot holds an even number of them.
    const writer = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(process.argv[1], {timeout: 5000});
         const add = db.prepare("INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (?, '', 'active', 0, 0)");
         let n = 0; const pair = db.transaction(() => { add.run('w-' + n++); add.run('w-' + n++) });
         setInterval(() => pair(), 2);`,
        db,
      ],
      {cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: 'ignore'},
    )
    const taken: string[] = []
    try {
      for (let i = 0; i < 4; i++) {
        const result = await ok(['backup', 'create', '--source', data, '--repo', repo])
        taken.push(result.snapshot.database)
      }
    } finally {
      writer.kill()
    }
    t.diagnostic(`under writes the database was: ${taken.join(', ')}`)
    assert.ok(
      taken.every((how) => how === 'read in place' || how === 'copied'),
      taken.join(),
    )
    for (const backup of await listed(repo)) {
      const target = join(tempDir('live-restore-'), 'data')
      await ok(['backup', 'restore', backup.id, '--repo', repo, '--to', target, '--yes'])
      const restored = new Database(join(target, 'mlflow.db'), {readonly: true})
      try {
        assert.equal(restored.pragma('integrity_check', {simple: true}), 'ok')
        // Stands alone, as the online-backup copy does: no WAL needed beside it.
        assert.notEqual(String(restored.pragma('journal_mode', {simple: true})), 'wal')
        const written = restored
          .prepare("SELECT count(*) FROM experiments WHERE name LIKE 'w-%'")
          .pluck()
          .get() as number
        assert.equal(written % 2, 0, `${backup.id}: ${written} experiments, half a transaction`)
      } finally {
        restored.close()
      }
    }
  })

  it('compatibility: a repository of archives keeps taking archives until told; list and restore show both kinds', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = join(work, 'legacy')
    await ok(['backup', 'create', '--source', source, '--repo', repo, '--format', 'archive'])
    // As an mlflowctl from before snapshots left it: archives and no config.
    unlinkSync(join(repo, 'config.json'))
    const next = await cli(['backup', 'create', '--source', source, '--repo', repo])
    assert.equal(next.code, 0, next.stdout)
    assert.equal(next.json!.result.format, 'archive')
    assert.ok(
      next.json!.warnings!.some((w: string) => /--format snapshot/.test(w)),
      next.stdout,
    )
    await ok(['backup', 'create', '--source', source, '--repo', repo, '--format', 'snapshot'])
    const kinds = (await listed(repo)).map((b) => b.kind).sort()
    assert.deepEqual(kinds, ['archive', 'archive', 'snapshot'])
    for (const backup of await listed(repo)) {
      const target = join(tempDir('legacy-restore-'), 'data')
      await ok(['backup', 'restore', backup.id, '--repo', repo, '--to', target, '--yes'])
      assert.deepEqual(tree(join(target, 'artifacts')), tree(join(source, 'artifacts')), backup.kind)
    }
  })

  it('PostgreSQL source: the COPY streams are chunked too, so an unchanged database adds little; restores into SQLite', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    if (!requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const url = await createPgDatabase('snapshot_pg_source')
    execFileSync(
      venv!.python,
      [
        '-c',
        `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; s = SqlAlchemyStore('${url}', '/tmp'); [s.create_experiment(f'pg-{i}') for i in range(20)]`,
      ],
      {stdio: 'pipe'},
    )
    const repo = join(work, 'pg')
    const first = await ok(['backup', 'create', '--source', url, '--repo', repo, '--artifacts', 'none'])
    const second = await ok(['backup', 'create', '--source', url, '--repo', repo, '--artifacts', 'none'])
    assert.ok(second.snapshot.filesNew > 0, 'a PostgreSQL source is exported every time')
    assert.equal(second.snapshot.blobsAdded, 0, 'and its unchanged COPY text dedupes')
    assert.ok(second.snapshot.bytesAdded < first.snapshot.bytesAdded)
    const target = join(tempDir('pg-snapshot-restore-'), 'mlflow.db')
    await ok(['backup', 'restore', 'latest', '--repo', repo, '--to', `sqlite:///${target}`, '--yes'])
    assert.equal(experiments(target).filter((name) => name.startsWith('pg-')).length, 20)
  })
})
