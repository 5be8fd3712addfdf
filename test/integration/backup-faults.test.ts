// The fault suite: create and restore stopped at every named step (MLFLOWCTL_FAULT_AT makes the
// process SIGKILL itself there), mistaken targets, hostile archives and full disks, against real MLflow data.
// After each fault the target and the repository must hold the old data or the new, and the next run must
// clean up after the dead one and say so.
import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  copyFileSync,
  cpSync,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {fileURLToPath} from 'node:url'
import {createGunzip, createGzip} from 'node:zlib'
import {after, before, describe, it} from 'node:test'

import Database from 'better-sqlite3'
import pg from 'pg'
import * as tarStream from 'tar-stream'

import {runCli, tempDir, type CliResult} from '../support/cli.js'
import {makeMlflowData} from '../support/mlflow-data.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService, testVenvs} from '../support/services.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const SCRATCH = '.mlflowctl-scratch'
const PASSPHRASE = {MLFLOWCTL_BACKUP_PASSPHRASE: 'fault suite passphrase'}

const cli = (args: string[], env: Record<string, string> = {}, timeoutMs?: number) =>
  runCli([...args, '--json'], {env, timeoutMs})

/** Runs the CLI until MLFLOWCTL_FAULT_AT kills it; returns its stderr. */
async function killedAt(step: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const child = spawn(process.execPath, [RUN, ...args], {
    env: {...process.env, ...env, MLFLOWCTL_FAULT_AT: step},
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)))
  assert.equal(signal, 'SIGKILL', `expected a kill at ${step}; it ran to the end: ${stderr.slice(-600)}`)
  return stderr
}

/** What an app-data style target holds: the experiments in its database and its artifact files. */
function state(db: string, artifacts: string): {experiments: string[]; files: number} | 'no database' {
  if (!existsSync(db)) return 'no database'
  const handle = new Database(db, {readonly: true})
  try {
    const experiments = (
      handle.prepare("SELECT name FROM experiments WHERE name <> 'Default' ORDER BY name").all() as Array<{
        name: string
      }>
    ).map((row) => row.name)
    return {experiments, files: countFiles(artifacts)}
  } finally {
    handle.close()
  }
}

function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0
  return readdirSync(dir, {withFileTypes: true}).reduce(
    (sum, entry) => sum + (entry.isDirectory() ? countFiles(join(dir, entry.name)) : 1),
    0,
  )
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')
const OLD = {experiments: ['old'], files: 5}
const NEW = {experiments: ['new'], files: 51}

describe('backup faults: kills at every step, mistaken targets, hostile archives, full disks', () => {
  const work = tempDir('faults-')
  const repo = join(work, 'repo')
  const dataNew = join(work, 'new', 'data')
  const dataOld = join(work, 'old', 'data')
  let newId = ''
  let oldId = ''

  before(async () => {
    if (!venv) return
    makeMlflowData(venv.python, dataNew, 'new', 3, 17)
    makeMlflowData(venv.python, dataOld, 'old', 1, 5)
    newId = (await cli(['backup', 'create', '--source', dataNew, '--repo', repo])).json!.result.id
    oldId = (await cli(['backup', 'create', '--source', dataOld, '--repo', repo])).json!.result.id
  })

  /** A fresh target holding the old data (and a file that is not MLflow's). */
  function oldTarget(): string {
    const target = join(tempDir('fault-target-'), 'data')
    cpSync(dataOld, target, {recursive: true})
    writeFileSync(join(target, 'operator-notes.txt'), 'not MLflow data')
    return target
  }

  it('create killed at each step: nothing listed, no plaintext left once the next run has cleaned up, which it says; an intact unlisted archive is committed', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const encryptedRepo = join(work, 'encrypted-repo')
    const listed = async () =>
      ((await cli(['backup', 'list', '--repo', encryptedRepo])).json!.result?.backups ?? []).map(
        (b: {id: string}) => b.id,
      )
    assert.equal(
      (await cli(['backup', 'create', '--source', dataNew, '--repo', encryptedRepo, '--encrypt'], PASSPHRASE)).code,
      0,
    )
    for (const step of [
      'create:locked',
      'scratch:created',
      'create:snapshot',
      'create:archive-entry',
      'create:archive-synced',
      'create:before-sidecar',
    ]) {
      const before = await listed()
      await killedAt(step, ['backup', 'create', '--source', dataNew, '--repo', encryptedRepo, '--encrypt'], PASSPHRASE)
      assert.deepEqual(await listed(), before, `${step}: a killed create must not be listed`)
      if (step === 'create:snapshot') {
        // The plaintext snapshot of an encrypted backup never enters the repository's tree (an rsync of it would
        // copy plaintext off-site): it waits in this machine's private data directory until the next run.
        assert.ok(!existsSync(join(encryptedRepo, SCRATCH)), 'no scratch space in the repository')
        const scratch = join(process.env.MLFLOWCTL_DATA_DIR!, 'backup', SCRATCH)
        assert.ok(
          readdirSync(scratch).some((run) => existsSync(join(scratch, run, 'snapshot.db'))),
          'the snapshot waits in the private data directory',
        )
        assert.equal(statSync(scratch).mode & 0o777, 0o700)
      }
      let unlisted: string | undefined
      if (step === 'create:before-sidecar') {
        unlisted = readdirSync(encryptedRepo).find(
          (name) => name.endsWith('.mlflowctl-backup.tar.gz') && !before.some((id: string) => name.startsWith(id)),
        )
        const incomplete = await cli(['backup', 'verify', join(encryptedRepo, unlisted!)], PASSPHRASE)
        assert.equal(incomplete.code, 6)
        assert.equal(incomplete.json!.error!.code, 'BACKUP_INCOMPLETE')
        assert.ok(
          !existsSync(join(encryptedRepo, unlisted!.replace('.mlflowctl-backup.tar.gz', '.verified.json'))),
          'not marked verified',
        )
      }
      const next = await cli(
        ['backup', 'create', '--source', dataNew, '--repo', encryptedRepo, '--encrypt'],
        PASSPHRASE,
      )
      assert.equal(next.code, 0, `${step}: ${next.stdout}`)
      const said = (next.json!.warnings ?? []).join('\n')
      if (step === 'create:locked') assert.match(said, /took over a stale lock/)
      else if (step === 'create:before-sidecar')
        assert.match(said, /committed \d{8}T\d{6}Z-[0-9a-f]{6}: a killed run had written it whole/)
      else
        assert.match(
          said,
          step === 'create:archive-entry' || step === 'create:archive-synced'
            ? /removed .*\.partial/
            : /removed the scratch space of a killed run/,
        )
      assert.deepEqual(
        readdirSync(encryptedRepo).filter(
          (name) => name.endsWith('.partial') || name === SCRATCH || name.endsWith('.tmp'),
        ),
        [],
        `${step}: debris left`,
      )
      if (unlisted)
        assert.ok(
          (await listed()).includes(unlisted.replace('.mlflowctl-backup.tar.gz', '')),
          'the committed archive is listed now',
        )
    }
  })

  // The steps of an app-data --force restore, with what the next run must find (old before the journal says
  // committed, new after). operator-notes.txt is not MLflow's and survives every one of them.
  for (const [step, expected] of [
    ['restore:extracted', OLD],
    ['restore:loaded', OLD],
    ['restore:journal-written', OLD],
    ['restore:aside:mlflow.db', OLD],
    ['restore:in:mlflow.db', OLD],
    ['restore:aside:artifacts', OLD],
    ['restore:in:artifacts', OLD],
    ['restore:committed', NEW],
  ] as const) {
    it(`app-data restore killed at ${step}: the next run ${expected === NEW ? 'finishes it' : 'undoes it'} and says so`, async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS)) return
      const target = oldTarget()
      await killedAt(step, ['backup', 'restore', newId, '--repo', repo, '--to', target, '--force', '--yes'])
      // The next run that touches the target: a backup of it.
      const next = await cli([
        'backup',
        'create',
        '--source',
        target,
        '--repo',
        join(work, `next-${step.replaceAll(':', '-')}`),
      ])
      assert.equal(next.code, 0, next.stdout)
      const said = (next.json!.warnings ?? []).join('\n')
      assert.match(
        said,
        step.startsWith('restore:journal') || step.startsWith('restore:aside') || step.startsWith('restore:in')
          ? /undid an interrupted restore/
          : step === 'restore:committed'
            ? /finished an interrupted restore/
            : /removed the scratch space of a killed run/,
      )
      assert.deepEqual(state(join(target, 'mlflow.db'), join(target, 'artifacts')), expected)
      assert.equal(readFileSync(join(target, 'operator-notes.txt'), 'utf8'), 'not MLflow data')
      assert.ok(!existsSync(join(target, SCRATCH)), 'no scratch left in the target')
    })
  }

  it('SQLite with --artifacts-to, killed between the database and the artifacts: never a database without its artifacts; --force replaces the tree instead of merging', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    for (const step of ['restore:in:mlflow.db', 'restore:aside:artifacts']) {
      const dir = tempDir('fault-sqlite-')
      const db = join(dir, 'store', 'mlflow.db')
      const artifacts = join(dir, 'store-artifacts', 'artifacts')
      cpSync(join(dataOld, 'mlflow.db'), db)
      cpSync(join(dataOld, 'artifacts'), artifacts, {recursive: true})
      const oldDb = sha(db)
      await killedAt(step, [
        'backup',
        'restore',
        newId,
        '--repo',
        repo,
        '--to',
        `sqlite:///${db}`,
        '--artifacts-to',
        artifacts,
        '--force',
        '--yes',
      ])
      const next = await cli([
        'backup',
        'create',
        '--source',
        `sqlite:///${db}`,
        '--artifacts-source',
        artifacts,
        '--repo',
        join(dir, 'r'),
      ])
      assert.equal(next.code, 0, next.stdout)
      assert.match((next.json!.warnings ?? []).join('\n'), /undid an interrupted restore/)
      assert.equal(sha(db), oldDb, `${step}: the old database is back, byte for byte`)
      assert.deepEqual(state(db, artifacts), OLD)
      assert.ok(!existsSync(join(dir, 'store', SCRATCH)) && !existsSync(join(dir, 'store-artifacts', SCRATCH)))
    }
    const dir = tempDir('fault-sqlite-')
    const db = join(dir, 'mlflow.db')
    const artifacts = join(dir, 'artifacts')
    cpSync(join(dataOld, 'mlflow.db'), db)
    cpSync(join(dataOld, 'artifacts'), artifacts, {recursive: true})
    const refused = await cli([
      'backup',
      'restore',
      newId,
      '--repo',
      repo,
      '--to',
      `sqlite:///${db}`,
      '--artifacts-to',
      artifacts,
    ])
    assert.equal(refused.json!.error!.code, 'TARGET_NOT_EMPTY')
    assert.ok(
      refused.json!.error!.suggestions.some((s) => s.includes(`--repo ${repo}`) && s.includes('--force')),
      'the --force suggestion can be pasted: it names --repo',
    )
    const forced = await cli([
      'backup',
      'restore',
      newId,
      '--repo',
      repo,
      '--to',
      `sqlite:///${db}`,
      '--artifacts-to',
      artifacts,
      '--force',
      '--yes',
    ])
    assert.equal(forced.code, 0, forced.stdout)
    assert.deepEqual(state(db, artifacts), NEW, 'the old artifact files are gone: replaced, not merged')
    // The safety backup holds everything the restore replaced, the old artifacts included.
    const safety = await cli(['backup', 'verify', forced.json!.result.safetyBackup])
    assert.equal(safety.code, 0, safety.stdout)
    assert.equal(
      JSON.parse(
        readFileSync(forced.json!.result.safetyBackup.replace('.mlflowctl-backup.tar.gz', '.manifest.json'), 'utf8'),
      ).artifacts.files,
      OLD.files,
    )
  })

  it('PostgreSQL with --artifacts-to: a kill before the commit is undone, a kill after it is finished; a killed restore takes its loader with it', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const url = await createPgDatabase('mlflowctl_faults')
    const artifacts = join(tempDir('fault-pg-'), 'artifacts')
    assert.equal(
      (await cli(['backup', 'restore', oldId, '--repo', repo, '--to', url, '--artifacts-to', artifacts])).code,
      0,
    )
    const pgState = async () => {
      const client = new pg.Client({connectionString: url})
      await client.connect()
      try {
        const names = (
          await client.query<{name: string}>("SELECT name FROM experiments WHERE name <> 'Default' ORDER BY name")
        ).rows.map((row) => row.name)
        return {experiments: names, files: countFiles(artifacts)}
      } finally {
        await client.end()
      }
    }
    assert.deepEqual(await pgState(), OLD)
    const args = [
      'backup',
      'restore',
      newId,
      '--repo',
      repo,
      '--to',
      url,
      '--artifacts-to',
      artifacts,
      '--force',
      '--yes',
    ]
    const next = () =>
      cli(['backup', 'create', '--source', url, '--artifacts-source', artifacts, '--repo', join(work, 'pg-next')])
    await killedAt('restore:in:artifacts', args)
    const undone = await next()
    assert.equal(undone.code, 0, undone.stdout)
    assert.match((undone.json!.warnings ?? []).join('\n'), /undid an interrupted restore/)
    assert.deepEqual(await pgState(), OLD, 'the transaction never committed and the artifacts went back')
    await killedAt('restore:database-committed', args)
    const finished = await next()
    assert.equal(finished.code, 0, finished.stdout)
    assert.match((finished.json!.warnings ?? []).join('\n'), /finished an interrupted restore.*had committed/)
    assert.deepEqual(await pgState(), NEW, 'the database committed, so the artifacts were rolled forward to match')
    assert.ok(!existsSync(join(artifacts, '..', SCRATCH)))

    // Killed while the loader works: the loader goes too, and the database stays as it was.
    const child = spawn(
      process.execPath,
      [RUN, 'backup', 'restore', oldId, '--repo', repo, '--to', url, '--artifacts-to', artifacts, '--force', '--yes'],
      {stdio: ['ignore', 'ignore', 'pipe']},
    )
    let progress = ''
    child.stderr!.on('data', (chunk) => (progress += chunk))
    for (let i = 0; i < 1200 && !progress.includes('creating the schema'); i++)
      await new Promise((r) => setTimeout(r, 50))
    const loaders = () =>
      execFileSync('ps', ['-ww', '-eo', 'pid,ppid,args'], {encoding: 'utf8'})
        .split('\n')
        .filter((line) => line.includes('restore_db.py') && line.includes(artifacts.slice(0, -'/artifacts'.length)))
    let seen = false
    for (let i = 0; i < 200 && !seen; i++) {
      seen = loaders().length > 0
      if (!seen) await new Promise((r) => setTimeout(r, 50))
    }
    assert.ok(seen, 'the loader was running')
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    for (let i = 0; i < 100 && loaders().length > 0; i++) await new Promise((r) => setTimeout(r, 100))
    assert.deepEqual(loaders(), [], 'the loader died with the command')
    assert.deepEqual(await pgState(), NEW, 'and nothing was committed')
  })

  it('mistaken targets: a database file, the parent of the data directory, /proc; nothing is removed without --force', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const target = oldTarget()
    const db = join(target, 'mlflow.db')
    const before = sha(db)
    const asFile = await cli(['backup', 'restore', newId, '--repo', repo, '--to', db, '--force', '--yes'])
    assert.equal(asFile.code, 2)
    assert.equal(asFile.json!.error!.code, 'TARGET_INVALID')
    assert.match(asFile.json!.error!.message, /is a file, not an app-data directory.*sqlite:\/\/\//)
    assert.equal(sha(db), before)
    const parent = join(target, '..')
    writeFileSync(join(parent, 'important.txt'), 'keep')
    const asParent = await cli(['backup', 'restore', newId, '--repo', repo, '--to', parent])
    assert.equal(asParent.code, 2)
    assert.equal(asParent.json!.error!.code, 'TARGET_NOT_EMPTY')
    assert.match(asParent.json!.error!.message, /important\.txt/)
    assert.ok(asParent.json!.error!.suggestions.some((s) => s.includes(`Did you mean --to ${target}?`)))
    const forcedParent = await cli(['backup', 'restore', newId, '--repo', repo, '--to', parent, '--force', '--yes'])
    assert.equal(forcedParent.code, 0, forcedParent.stdout)
    assert.equal(
      readFileSync(join(parent, 'important.txt'), 'utf8'),
      'keep',
      "files that are not MLflow's are never touched",
    )
    assert.equal(sha(db), before, 'nor is the data directory below it')
    assert.match((forcedParent.json!.warnings ?? []).join(), /left untouched .*important\.txt/)
    const sqliteDir = await cli(['backup', 'restore', newId, '--repo', repo, '--to', `sqlite:///${target}`])
    assert.equal(sqliteDir.json!.error!.code, 'TARGET_INVALID')
    for (const args of [
      ['backup', 'restore', newId, '--repo', repo, '--to', '/proc/mlflowctl-x'],
      ['backup', 'create', '--source', dataNew, '--repo', '/proc/mlflowctl-x'],
    ]) {
      const result = await cli(args, {}, 120_000)
      assert.equal(result.code, 5, `${args.join(' ')} ends with an error: ${result.stdout}`)
      assert.equal(result.json!.error!.code, 'PATH_UNUSABLE')
    }
  })

  it('refuses to back up what is not an MLflow database (exit 3), and records no success for it', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const dir = tempDir('not-mlflow-')
    const empty = join(dir, 'empty.db')
    writeFileSync(empty, '')
    const foreign = join(dir, 'foreign.db')
    const handle = new Database(foreign)
    handle.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x')")
    handle.close()
    const pgEmpty = await createPgDatabase('mlflowctl_not_mlflow')
    const history = join(process.env.MLFLOWCTL_DATA_DIR!, 'history.jsonl')
    const okBefore = existsSync(history)
      ? readFileSync(history, 'utf8')
          .split('\n')
          .filter((line) => line.includes('"result":"ok"')).length
      : 0
    for (const [source, found] of [
      [`sqlite:///${empty}`, /no tables at all/],
      [`sqlite:///${foreign}`, /1 tables but no alembic_version \(notes\)/],
      [pgEmpty, /no tables at all/],
    ] as const) {
      const result: CliResult = await cli(['backup', 'create', '--source', source, '--repo', join(dir, 'repo')])
      assert.equal(result.code, 3, result.stdout)
      assert.equal(result.json!.error!.code, 'SOURCE_NOT_MLFLOW')
      assert.match(result.json!.error!.message, found)
      assert.ok(!result.stdout.includes('mlflowctl-ci'), 'no password in the output')
    }
    const okAfter = existsSync(history)
      ? readFileSync(history, 'utf8')
          .split('\n')
          .filter((line) => line.includes('"result":"ok"')).length
      : 0
    assert.equal(okAfter, okBefore)
    assert.deepEqual((await cli(['backup', 'list', '--repo', join(dir, 'repo')])).json!.result.backups, [])
  })

  it('an archive with an unlisted entry is refused before the entry is written', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const hostile = join(tempDir('hostile-'), 'repo')
    mkdirSync(hostile)
    const name = `${newId}.mlflowctl-backup.tar.gz`
    // The original manifest and sidecar, plus a 256 MiB stowaway (zeros: small once compressed).
    const pack = tarStream.pack()
    const extract = tarStream.extract()
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: unknown) => void chunks.push(chunk as Buffer))
      stream.on('end', () => {
        if (header.name === 'manifest.json') {
          const big = pack.entry({
            name: 'artifacts/stowaway.bin',
            size: 256 * 1024 * 1024,
          }) as unknown as NodeJS.WritableStream
          const zeros = Buffer.alloc(1024 * 1024)
          let written = 0
          const write = () => {
            while (written < 256) {
              written++
              if (!big.write(zeros)) return big.once('drain', write)
            }
            big.end()
            pack.entry({name: header.name, size: Buffer.concat(chunks).length}, Buffer.concat(chunks))
            next()
          }
          return write()
        }
        pack.entry({name: header.name, size: Buffer.concat(chunks).length}, Buffer.concat(chunks))
        next()
      })
    })
    extract.on('finish', () => pack.finalize())
    await Promise.all([
      pipeline(createReadStream(join(repo, name)), createGunzip(), extract),
      pipeline(pack, createGzip({level: 1}), createWriteStream(join(hostile, name))),
    ])
    copyFileSync(join(repo, `${newId}.manifest.json`), join(hostile, `${newId}.manifest.json`))
    const target = join(tempDir('hostile-target-'), 'data')
    const refused = await cli(['backup', 'restore', newId, '--repo', hostile, '--to', target])
    assert.equal(refused.code, 6, refused.stdout)
    assert.match(
      refused.json!.error!.message,
      /entry artifacts\/stowaway\.bin is not in the backup's manifest/,
      'refused from its header, before a byte of it was written',
    )
    assert.ok(!existsSync(join(target, 'mlflow.db')) && !existsSync(join(target, SCRATCH)))
    rmSync(join(hostile, `${newId}.manifest.json`))
    const noSidecar = await cli(['backup', 'restore', join(hostile, name), '--to', target])
    assert.equal(noSidecar.code, 6)
    assert.match(
      noSidecar.json!.error!.message,
      /stowaway\.bin is in the archive but not in the manifest/,
      'without a sidecar, a read-only first pass refuses it',
    )
  })

  describe('full disks (a small tmpfs; mounting needs root)', () => {
    const mounts: string[] = []
    const canMount =
      process.getuid?.() === 0 &&
      (() => {
        const probe = tempDir('mount-probe-')
        try {
          execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], {stdio: 'pipe'})
          execFileSync('umount', [probe])
          return true
        } catch {
          return false
        }
      })()
    const NO_MOUNT = 'mounting a tmpfs needs root (and mount permission); run the suite as root, as CI does'
    const smallDisk = (megabytes: number) => {
      const dir = tempDir('small-disk-')
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(megabytes * 1024)}k,mode=0700`, 'tmpfs', dir])
      mounts.push(dir)
      return dir
    }
    const fill = (dir: string) => {
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=1M'], {stdio: 'pipe'})
      } catch {
        // dd stops when the disk is full, which is the point
      }
    }
    after(() => {
      for (const dir of mounts) execFileSync('umount', ['-l', dir])
    })

    it('a full repository: DISK_FULL, no lock and no partial left behind, and the next run after space is freed succeeds', async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, canMount, NO_MOUNT)) return
      const disk = smallDisk(8)
      const fullRepo = join(disk, 'repo')
      mkdirSync(fullRepo)
      fill(disk)
      const full = await cli(['backup', 'create', '--source', dataNew, '--repo', fullRepo])
      assert.equal(full.code, 5, full.stdout)
      assert.equal(full.json!.error!.code, 'DISK_FULL')
      assert.deepEqual(readdirSync(fullRepo), [], 'no lock, no partial archive, no scratch')
      rmSync(join(disk, 'filler'))
      const next = await cli(['backup', 'create', '--source', dataOld, '--repo', fullRepo])
      assert.equal(next.code, 0, next.stdout)
    })

    it('a disk that fills part-way (room for half the archive): DISK_FULL, and nothing is left behind', async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, canMount, NO_MOUNT)) return
      // Half the archive, truly (the snapshot itself waits in the private data directory, not in the repository).
      const archive = readdirSync(repo).find((name) => name.startsWith(newId) && name.endsWith('.tar.gz'))!
      const disk = smallDisk(Math.max(1 / 256, statSync(join(repo, archive)).size / 2 / 1024 / 1024))
      const result = await cli(['backup', 'create', '--source', dataNew, '--repo', disk])
      assert.equal(result.code, 5, result.stdout)
      assert.equal(result.json!.error!.code, 'DISK_FULL')
      assert.deepEqual(readdirSync(disk), [])
    })

    it('a full target disk: the restore fails with DISK_FULL and the old data is untouched', async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, canMount, NO_MOUNT)) return
      const disk = smallDisk(8)
      const target = join(disk, 'data')
      cpSync(dataOld, target, {recursive: true})
      const before = sha(join(target, 'mlflow.db'))
      fill(disk)
      const result = await cli(['backup', 'restore', newId, '--repo', repo, '--to', target, '--force', '--yes'])
      assert.equal(result.code, 5, result.stdout)
      assert.equal(result.json!.error!.code, 'DISK_FULL')
      assert.equal(sha(join(target, 'mlflow.db')), before)
      assert.deepEqual(state(join(target, 'mlflow.db'), join(target, 'artifacts')), OLD)
      assert.ok(!existsSync(join(target, SCRATCH)))
    })
  })
})
