// The fault suite, second round: the world around a kill. Users who write between a kill and the next
// command, a dead run on another host or under a reused PID, another tool copying into the repository, and two
// restores at once. Real MLflow writes every store; the CLI runs as a user runs it.
import assert from 'node:assert/strict'
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {pausedWhileWorking, resumed, runCli, tempDir} from '../support/cli.js'
import {makeMlflowData} from '../support/mlflow-data.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService, testVenvs} from '../support/services.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const SCRATCH = '.mlflowctl-scratch'

/** A user of the restarted server: an experiment, a run and a metric, through MLflow's own store. */
const USER_WRITES = `
import sys
import mlflow

mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
experiment = mlflow.create_experiment("written-after-the-kill")
with mlflow.start_run(experiment_id=experiment):
    mlflow.log_metric("accuracy", 0.93, step=1)
`

const cli = (args: string[], env: Record<string, string> = {}) => runCli([...args, '--json'], {env})

/** Runs the CLI until MLFLOWCTL_FAULT_AT kills it there. */
function stoppedAt(step: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [RUN, ...args, '--json'], {
    env: {...process.env, MLFLOWCTL_FAULT_AT: step},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve) =>
    child.once('exit', (_code, sig) => {
      assert.equal(sig, 'SIGKILL', `expected a kill at ${step}: ${stderr.slice(-600)}`)
      resolve(child)
    }),
  )
}

function experiments(db: string): string[] {
  const handle = new Database(db, {readonly: true})
  try {
    return handle
      .prepare("SELECT name FROM experiments WHERE name <> 'Default' ORDER BY name")
      .pluck()
      .all() as string[]
  } finally {
    handle.close()
  }
}

describe('backup faults, second round: the world around a kill', () => {
  const work = tempDir('recovery-')
  const repo = join(work, 'repo')
  const dataNew = join(work, 'new', 'data')
  const dataOld = join(work, 'old', 'data')
  const sleepers: ChildProcess[] = []
  let newId = ''
  after(() => sleepers.forEach((child) => child.kill('SIGKILL')))

  before(async () => {
    if (!venv) return
    writeFileSync(join(work, 'user_writes.py'), USER_WRITES)
    makeMlflowData(venv.python, dataNew, 'new', 2, 1)
    makeMlflowData(venv.python, dataOld, 'old', 1, 1)
    const created = await cli(['backup', 'create', '--source', dataNew, '--repo', repo])
    assert.equal(created.code, 0, created.stdout)
    newId = created.json!.result.id
  })

  function oldTarget(): string {
    const target = join(tempDir('recovery-target-'), 'data')
    cpSync(dataOld, target, {recursive: true})
    return target
  }

  // MLflow puts a new experiment's artifacts under ./mlruns: the users run where their data is.
  const userWrites = (db: string) =>
    execFileSync(venv!.python, [join(work, 'user_writes.py'), db], {stdio: 'pipe', cwd: tempDir('user-')})
  const restoreArgs = (target: string) => [
    'backup',
    'restore',
    newId,
    '--repo',
    repo,
    '--to',
    target,
    '--force',
    '--yes',
  ]

  it('item 1: a restore killed with the new data in place, then written to by users: the nightly backup touches nothing and says how to choose; --keep live keeps their writes', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Given a --force restore killed after its new data went in, and users who then logged through MLflow
    const target = oldTarget()
    await stoppedAt('restore:in:artifacts', restoreArgs(target))
    userWrites(join(target, 'mlflow.db'))
    assert.deepEqual(experiments(join(target, 'mlflow.db')), ['new', 'written-after-the-kill'])
    // When the nightly backup runs
    const nightly = await cli(['backup', 'create', '--source', target, '--repo', join(work, 'nightly')])
    // Then it refuses and changes nothing: the users' experiment is where they left it
    assert.equal(nightly.code, 5, nightly.stdout)
    assert.equal(nightly.json!.error!.code, 'RECOVERY_CONFLICT')
    assert.match(nightly.json!.error!.message, /mlflow\.db now holds .*Nothing was touched/)
    const [keepLive, keepPrevious] = nightly.json!.error!.suggestions
    assert.match(keepLive, new RegExp(`backup recover --target ${target} --keep live`))
    assert.match(keepPrevious, /--keep previous/)
    assert.deepEqual(experiments(join(target, 'mlflow.db')), ['new', 'written-after-the-kill'])
    // And choosing to keep what is live keeps the users' writes, the previous data moved beside it, not deleted
    const chosen = await cli(['backup', 'recover', '--target', target, '--keep', 'live'])
    assert.equal(chosen.code, 0, chosen.stdout)
    assert.deepEqual(experiments(join(target, 'mlflow.db')), ['new', 'written-after-the-kill'])
    const kept = readdirSync(target).find((name) => name.startsWith('mlflowctl-kept-'))!
    assert.deepEqual(experiments(join(target, kept, 'mlflow.db')), ['old'])
    assert.ok(!existsSync(join(target, SCRATCH)), 'no scratch left')
    // And the next nightly backup holds the users' experiment
    const again = await cli(['backup', 'create', '--source', target, '--repo', join(work, 'nightly')])
    assert.equal(again.code, 0, again.stdout)
    assert.equal(again.json!.result.revision !== null, true)
  })

  it('item 1: --keep previous puts the data from before the restore back, and keeps what users wrote beside it', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const target = oldTarget()
    await stoppedAt('restore:in:artifacts', restoreArgs(target))
    userWrites(join(target, 'mlflow.db'))
    const chosen = await cli(['backup', 'recover', '--target', target, '--keep', 'previous'])
    assert.equal(chosen.code, 0, chosen.stdout)
    assert.deepEqual(experiments(join(target, 'mlflow.db')), ['old'])
    const kept = readdirSync(target).find((name) => name.startsWith('mlflowctl-kept-'))!
    assert.deepEqual(experiments(join(target, kept, 'mlflow.db')), ['new', 'written-after-the-kill'])
    assert.ok(existsSync(join(target, kept, 'artifacts')), 'with the artifacts that went with it')
  })

  it('item 1: MLflow recreating the database after a kill between the renames is not undone over', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Given a restore killed after the old database went aside, and a server that started and made a new one
    const target = oldTarget()
    await stoppedAt('restore:aside:mlflow.db', restoreArgs(target))
    assert.ok(!existsSync(join(target, 'mlflow.db')))
    userWrites(join(target, 'mlflow.db'))
    // When the next command touches the target
    const next = await cli(['backup', 'restore', newId, '--repo', repo, '--to', target, '--force', '--yes'])
    // Then it stops, and both databases are still there
    assert.equal(next.code, 5, next.stdout)
    assert.equal(next.json!.error!.code, 'RECOVERY_CONFLICT')
    assert.deepEqual(experiments(join(target, 'mlflow.db')), ['written-after-the-kill'])
    const aside = readdirSync(join(target, SCRATCH)).map((run) => join(target, SCRATCH, run, 'aside', 'mlflow.db'))
    assert.deepEqual(aside.filter(existsSync).map(experiments), [['old']])
  })

  it('item 1: a run killed on another host, and one whose PID now belongs to another process, are recovered; restore --force works after them', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const unshare = spawnSync('unshare', ['--uts', 'true']).status === 0
    if (
      !requireService(
        t,
        unshare,
        'a run on another host needs `unshare --uts` (root); run the suite as root, as CI does',
      )
    )
      return
    for (const who of ['another host', 'a reused PID'] as const) {
      // Given a restore killed after the old database went aside (the target has no mlflow.db) ...
      const target = oldTarget()
      if (who === 'another host') {
        // ... in a Connect pod with its own host name, which is gone now
        const killed = spawnSync(
          'unshare',
          [
            '--uts',
            'sh',
            '-c',
            `hostname connect-pod-7f9c && exec "$0" "$@"`,
            process.execPath,
            RUN,
            ...restoreArgs(target),
          ],
          {env: {...process.env, MLFLOWCTL_FAULT_AT: 'restore:aside:mlflow.db'}, encoding: 'utf8'},
        )
        assert.equal(killed.signal, 'SIGKILL', killed.stderr)
      } else {
        // ... by a process whose PID a later process has now
        await stoppedAt('restore:aside:mlflow.db', restoreArgs(target))
        const sleeper = spawn('sleep', ['120'])
        sleepers.push(sleeper)
        const [run] = readdirSync(join(target, SCRATCH))
        const reused = run.replace(/^run-\d+-/, `run-${sleeper.pid}-`)
        const journal = join(target, SCRATCH, run, 'swap-journal.json')
        writeFileSync(journal, readFileSync(journal, 'utf8').replaceAll(run, reused))
        // (its run began an hour ago; the process that has its PID now began a moment ago)
        const hourAgo = new Date(Date.now() - 3_600_000).toISOString()
        for (const file of [join(target, SCRATCH, run, 'lease.json'), join(target, '.mlflowctl-target.lock')])
          if (existsSync(file))
            writeFileSync(
              file,
              JSON.stringify({...JSON.parse(readFileSync(file, 'utf8')), pid: sleeper.pid, startedAt: hourAgo}),
            )
        renameSync(join(target, SCRATCH, run), join(target, SCRATCH, reused))
      }
      assert.ok(!existsSync(join(target, 'mlflow.db')))
      // ... and its heartbeat stopped minutes before the next run
      const minutesAgo = (Date.now() - 600_000) / 1000
      for (const path of [
        join(target, '.mlflowctl-target.lock'),
        ...readdirSync(join(target, SCRATCH)).map((r) => join(target, SCRATCH, r)),
      ])
        if (existsSync(path)) utimesSync(path, minutesAgo, minutesAgo)
      // When the restore is run again
      const again = await cli(restoreArgs(target))
      // Then the dead run is undone first and the restore goes through
      assert.equal(again.code, 0, `${who}: ${again.stdout}`)
      assert.match(again.json!.warnings!.join(), /undid an interrupted restore/)
      assert.deepEqual(experiments(join(target, 'mlflow.db')), ['new'])
    }
  })

  it('item 2: backup create leaves alone an archive another tool is still copying in, and lists it once its sidecar arrives', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Given an operator who copies an off-site archive back: under its final name, the sidecar last
    const offsite = join(work, 'offsite')
    const made = await cli(['backup', 'create', '--source', dataOld, '--repo', offsite])
    const copiedId = made.json!.result.id
    const repoB = join(tempDir('copy-in-'), 'repo')
    assert.equal((await cli(['backup', 'create', '--source', dataNew, '--repo', repoB])).code, 0)
    const bytes = readFileSync(join(offsite, `${copiedId}.mlflowctl-backup.tar.gz`))
    const half = Math.floor(bytes.length / 2)
    const fd = openSync(join(repoB, `${copiedId}.mlflowctl-backup.tar.gz`), 'w')
    writeSync(fd, bytes, 0, half)
    // When a backup runs while the copy is half-way
    const during = await cli(['backup', 'create', '--source', dataNew, '--repo', repoB])
    // Then the copy is left alone and named
    assert.equal(during.code, 0, during.stdout)
    assert.match(during.json!.warnings!.join(), new RegExp(`left ${copiedId}\\.mlflowctl-backup\\.tar\\.gz alone`))
    assert.ok(existsSync(join(repoB, `${copiedId}.mlflowctl-backup.tar.gz`)), 'not deleted')
    // And when the copy completes (the rest, then the sidecar), it is a listed, intact backup
    writeSync(fd, bytes, half, bytes.length - half, half)
    closeSync(fd)
    copyFileSync(join(offsite, `${copiedId}.manifest.json`), join(repoB, `${copiedId}.manifest.json`))
    const listed = await cli(['backup', 'list', '--repo', repoB])
    assert.ok(listed.json!.result.backups.some((b: {id: string}) => b.id === copiedId))
    assert.equal((await cli(['backup', 'verify', copiedId, '--repo', repoB])).code, 0)
  })

  it('item 6: a second restore into a target a restore is working on is refused (TARGET_LOCKED), whatever the kind; so is a backup that would recover it', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const sqliteDir = tempDir('lock-sqlite-')
    const appData = oldTarget()
    // Each kind, with the scratch root its restore works in once it holds its target.
    const kinds: Array<[string, string, string]> = [
      ['app-data', appData, appData],
      ['sqlite', `sqlite:///${join(sqliteDir, 'mlflow.db')}`, sqliteDir],
      ['postgresql', await createPgDatabase('mlflowctl_lock_target'), join(process.env.MLFLOWCTL_DATA_DIR!, 'restore')],
    ]
    for (const [kind, to, scratchRoot] of kinds) {
      const args = ['backup', 'restore', newId, '--repo', repo, '--to', to, '--force', '--yes']
      // Given a restore caught in the middle of its work (paused, alive)
      const first = await pausedWhileWorking(args, scratchRoot)
      try {
        // When a second restore into the same target starts
        const second = await cli(args)
        // Then it is refused before it touches anything
        assert.equal(second.code, 5, `${kind}: ${second.stdout}`)
        assert.equal(second.json!.error!.code, 'TARGET_LOCKED', kind)
        assert.match(second.json!.error!.message, /a restore, pid \d+|mlflowctl restore \(pid \d+\)/, kind)
        if (kind === 'app-data') {
          const backup = await cli(['backup', 'create', '--source', to, '--repo', join(work, 'during')])
          assert.equal(backup.json!.error!.code, 'TARGET_LOCKED', 'a backup that would recover it waits its turn')
        }
      } finally {
        // And the first one finishes as if nothing happened
        const done = await resumed(first)
        assert.equal(done.code, 0, `${kind}: the first restore`)
      }
      assert.equal((await cli(args)).code, 0, `${kind}: once it is done, the next restore runs`)
    }
  })
})
