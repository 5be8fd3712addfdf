// The journaled swap, the scratch sweep, the repository lock and the path helpers, on real temp directories.
// Kills are simulated by writing the journal a killed run leaves at each step, then recovering it.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, readdirSync, renameSync, utimesSync, writeFileSync} from 'node:fs'
import {mkdtemp} from 'node:fs/promises'
import {hostname, tmpdir} from 'node:os'
import {basename, dirname, join} from 'node:path'
import {describe, it} from 'node:test'

import {LOCK, lockRepo} from '../../../src/adapters/backup/repo-files.js'
import {inspectTarget, recoverTarget} from '../../../src/adapters/backup/restore-target.js'
import {makeDirs} from '../../../src/adapters/fs/safe-fs.js'
import {SCRATCH_DIR, deadRuns, openScratch} from '../../../src/adapters/fs/scratch.js'
import {journalFor, recoverSwap, swapIn, type SwapEntry} from '../../../src/adapters/fs/swap.js'

const temp = () => mkdtemp(join(tmpdir(), 'swap-'))

/** A target (old db + artifacts) and a staged replacement (new db + artifacts), as a restore builds them. */
async function layout() {
  const root = await temp()
  const live = {db: join(root, 'mlflow.db'), artifacts: join(root, 'artifacts')}
  writeFileSync(live.db, 'old-db')
  writeFileSync(`${live.db}-wal`, 'old-wal')
  mkdirSync(live.artifacts)
  writeFileSync(join(live.artifacts, 'old.txt'), 'old')
  const run = join(root, SCRATCH_DIR, 'run-1-ab@h')
  mkdirSync(join(run, 'aside'), {recursive: true})
  mkdirSync(join(run, 'new-artifacts'))
  writeFileSync(join(run, 'new.db'), 'new-db')
  writeFileSync(join(run, 'new-artifacts', 'new.txt'), 'new')
  const entries = [
    {live: live.db, staged: join(run, 'new.db'), aside: join(run, 'aside', 'mlflow.db')},
    {live: `${live.db}-wal`, aside: join(run, 'aside', 'mlflow.db-wal')},
    {live: live.artifacts, staged: join(run, 'new-artifacts'), aside: join(run, 'aside', 'artifacts')},
  ]
  const state = () => ({
    db: existsSync(live.db) ? readFileSync(live.db, 'utf8') : null,
    wal: existsSync(`${live.db}-wal`),
    artifacts: existsSync(live.artifacts) ? readdirSync(live.artifacts) : null,
  })
  return {root, run, live, entries, state}
}

const OLD = {db: 'old-db', wal: true, artifacts: ['old.txt']}
const NEW = {db: 'new-db', wal: false, artifacts: ['new.txt']}

describe('swapIn and recoverSwap', () => {
  it('swaps every entry in, and deletes the old data only after the check passed', async () => {
    const {run, entries, state} = await layout()
    let seenDuringCheck: unknown
    await swapIn(entries, {
      journalCopies: [join(run, 'swap-journal.json')],
      check: async () => void (seenDuringCheck = {...state(), aside: readdirSync(join(run, 'aside')).sort()}),
    })
    assert.deepEqual(state(), NEW)
    assert.deepEqual(
      seenDuringCheck,
      {...NEW, aside: ['artifacts', 'mlflow.db', 'mlflow.db-wal']},
      'the old data waits aside while the new is checked',
    )
    assert.deepEqual(readdirSync(join(run, 'aside')), [], 'then it goes')
    assert.ok(!existsSync(join(run, 'swap-journal.json')))
  })

  it('puts the old data back when the check fails, and rethrows', async () => {
    const {run, entries, state} = await layout()
    await assert.rejects(
      swapIn(entries, {
        journalCopies: [join(run, 'swap-journal.json')],
        check: async () => Promise.reject(new Error('quick_check failed')),
      }),
      /quick_check failed/,
    )
    assert.deepEqual(state(), OLD)
  })

  // Each prefix of the renames (every old path aside, then every new one in) is a place a kill can land; the
  // journal says "prepared" at all of them.
  const renames = (entries: Awaited<ReturnType<typeof layout>>['entries']) => [
    ...entries.map((e) => () => renameSync(e.live, e.aside)),
    ...entries.filter((e) => e.staged).map((e) => () => renameSync(e.staged!, e.live)),
  ]
  /** The journal swapIn writes before its first rename, written where a killed run leaves it. */
  async function journalOf(run: string, entries: SwapEntry[], database?: {display: string; mark: string}) {
    const journal = await journalFor(entries, {
      journalCopies: [join(run, 'swap-journal.json')],
      database: database && {...database, commit: async () => undefined},
    })
    writeFileSync(journal.copies[0], JSON.stringify(journal))
    return journal
  }

  for (let done = 0; done <= 5; done++) {
    it(`a kill after ${done} of 5 renames, prepared: the next run undoes it and the old data is back whole`, async () => {
      const {run, entries, state} = await layout()
      const journal = await journalOf(run, entries)
      for (const step of renames(entries).slice(0, done)) step()
      assert.match((await recoverSwap(journal.copies[0]))!, /undid an interrupted restore/)
      assert.deepEqual(state(), OLD)
      assert.ok(!existsSync(journal.copies[0]))
    })
  }

  it('a kill after the journal said committed: the next run finishes (new data stays, the old goes)', async () => {
    const {run, entries, state} = await layout()
    const journal = await journalOf(run, entries)
    for (const step of renames(entries)) step()
    writeFileSync(journal.copies[0], JSON.stringify({...journal, state: 'committed'}))
    assert.match((await recoverSwap(journal.copies[0]))!, /finished an interrupted restore/)
    assert.deepEqual(state(), NEW)
    assert.deepEqual(readdirSync(join(run, 'aside')), [])
  })

  it('an external database decides a prepared journal: committed rolls forward, not committed undoes, unknown leaves it pending', async () => {
    for (const [answer, expected, message] of [
      [true, NEW, /had committed/],
      [false, OLD, /undid/],
      [undefined, 'unchanged', /is pending/],
    ] as const) {
      const {run, entries, state} = await layout()
      const journal = await journalOf(run, entries, {display: 'postgresql://u:***@db/m', mark: 'm1'})
      renames(entries)[0]() // killed after the first rename
      const before = state()
      const asked: string[] = []
      assert.match(
        (await recoverSwap(journal.copies[0], async (database) => (asked.push(database.mark), answer)))!,
        message,
      )
      assert.deepEqual(asked, ['m1'])
      assert.deepEqual(state(), expected === 'unchanged' ? before : expected)
      assert.equal(
        existsSync(journal.copies[0]),
        expected === 'unchanged',
        'a pending journal stays for the run that can decide',
      )
    }
  })

  it('a target that had no data: undo takes the new data out again instead of leaving a half restore', async () => {
    const root = await temp()
    const run = join(root, SCRATCH_DIR, 'run-1-ab@h')
    mkdirSync(join(run, 'aside'), {recursive: true})
    writeFileSync(join(run, 'new.db'), 'new-db')
    mkdirSync(join(run, 'new-artifacts'))
    const entries = [
      {live: join(root, 'mlflow.db'), staged: join(run, 'new.db'), aside: join(run, 'aside', 'mlflow.db')},
      {live: join(root, 'artifacts'), staged: join(run, 'new-artifacts'), aside: join(run, 'aside', 'artifacts')},
    ]
    const journal = await journalOf(run, entries)
    renameSync(entries[0].staged, entries[0].live) // the staged db was moved in, then the run died
    await recoverSwap(journal.copies[0])
    assert.ok(
      !existsSync(join(root, 'mlflow.db')) && !existsSync(join(root, 'artifacts')),
      'empty again: never a database without its artifacts',
    )
  })
})

describe('recovery never undoes what was written after the kill', () => {
  /** A swap killed after every rename, before "committed": the new data is live, the old waits aside. */
  async function killedAfterRenames() {
    const {run, entries, state, live} = await layout()
    const journal = await journalFor(entries, {journalCopies: [join(run, 'swap-journal.json')]})
    writeFileSync(journal.copies[0], JSON.stringify(journal))
    for (const e of entries) renameSync(e.live, e.aside)
    for (const e of entries) if (e.staged) renameSync(e.staged, e.live)
    return {run, journal, state, live}
  }

  for (const [what, write] of [
    ['a write to the restored database', (live: {db: string}) => writeFileSync(live.db, 'new-db plus a run')],
    ['a -wal beside it (a server opened it)', (live: {db: string}) => writeFileSync(`${live.db}-wal`, 'frames')],
    [
      'a new artifact',
      (live: {artifacts: string}) => writeFileSync(join(live.artifacts, 'run-after-kill.txt'), 'metric plot'),
    ],
  ] as const) {
    it(`${what}: recovery touches nothing and says so, both versions kept`, async () => {
      const {journal, state, live, run} = await killedAfterRenames()
      write(live)
      const before = state()
      await assert.rejects(recoverSwap(journal.copies[0]), (error: Error & {code?: string}) => {
        assert.equal(error.code, 'RECOVERY_CONFLICT')
        assert.match(error.message, /changed since.*Nothing was touched/)
        return true
      })
      assert.deepEqual(state(), before, 'the data in place is as the users left it')
      assert.deepEqual(readdirSync(join(run, 'aside')).sort(), ['artifacts', 'mlflow.db', 'mlflow.db-wal'])
      assert.ok(existsSync(journal.copies[0]), 'the journal stays until the operator chooses')
    })
  }

  it('a swap whose check fails after the target was written to keeps both versions and its journal, even past its own clean-up', async () => {
    // Given a real scratch run and a swap whose check fails once a server has written to the new database
    const {entries, live} = await layout()
    const root = dirname(live.db)
    const scratch = await openScratch(root)
    const moved = entries.map((e) => ({
      ...e,
      staged: e.staged && join(scratch.path, basename(e.staged)),
      aside: join(scratch.path, 'aside', basename(e.live)),
    }))
    for (const e of entries) if (e.staged) renameSync(e.staged, join(scratch.path, basename(e.staged)))
    mkdirSync(join(scratch.path, 'aside'))
    // When the check fails
    await assert.rejects(
      swapIn(moved, {
        journalCopies: [join(scratch.path, 'swap-journal.json')],
        check: async () => {
          writeFileSync(live.db, 'new-db plus a run logged meanwhile')
          throw new Error('quick_check failed')
        },
      }),
      {code: 'RECOVERY_CONFLICT'},
    )
    // Then nothing was moved back over the write, and the run's clean-up leaves the old data and the journal
    await scratch.remove()
    assert.equal(readFileSync(live.db, 'utf8'), 'new-db plus a run logged meanwhile')
    assert.equal(readFileSync(join(scratch.path, 'aside', 'mlflow.db'), 'utf8'), 'old-db')
    assert.ok(existsSync(join(scratch.path, 'swap-journal.json')))
  })

  it('a database recreated by MLflow between the renames is a conflict too, never overwritten', async () => {
    const {run, entries, live} = await layout()
    const journal = await journalFor(entries, {journalCopies: [join(run, 'swap-journal.json')]})
    writeFileSync(journal.copies[0], JSON.stringify(journal))
    renameSync(entries[0].live, entries[0].aside) // killed after the old database went aside
    writeFileSync(live.db, 'an empty database MLflow created on its start')
    await assert.rejects(recoverSwap(journal.copies[0]), {code: 'RECOVERY_CONFLICT'})
    assert.equal(readFileSync(live.db, 'utf8'), 'an empty database MLflow created on its start')
    assert.equal(readFileSync(entries[0].aside, 'utf8'), 'old-db')
  })

  it('--keep live keeps what is in place and moves the previous data beside it; --keep previous the other way', async () => {
    for (const keep of ['live', 'previous'] as const) {
      const {journal, state, live, run} = await killedAfterRenames()
      writeFileSync(live.db, 'new-db plus a run')
      const said = (await recoverSwap(journal.copies[0], undefined, keep))!
      assert.match(said, new RegExp(`--keep ${keep}`))
      const kept = readdirSync(dirname(live.db)).find((name) => name.startsWith('mlflowctl-kept-'))!
      const keptDb = readFileSync(join(dirname(live.db), kept, 'mlflow.db'), 'utf8')
      if (keep === 'live') {
        assert.deepEqual(state(), {db: 'new-db plus a run', wal: false, artifacts: ['new.txt']})
        assert.equal(keptDb, 'old-db', 'the previous database is kept, not deleted')
      } else {
        assert.deepEqual(state(), OLD)
        assert.equal(keptDb, 'new-db plus a run', 'what users wrote after the kill is kept, not deleted')
      }
      assert.ok(!existsSync(journal.copies[0]))
      assert.deepEqual(readdirSync(join(run, 'aside')), [])
    }
  })
})

describe('what restores before the journal left behind', () => {
  it('a target killed between its two renames gets its old data back; a half-built copy goes; an old copy beside a live target is named, not deleted', async () => {
    const root = await temp()
    const target = join(root, 'data')
    mkdirSync(`${target}.replaced-20261128T061500Z-ab12cd-1764310500000`)
    writeFileSync(join(`${target}.replaced-20261128T061500Z-ab12cd-1764310500000`, 'mlflow.db'), 'old-db')
    mkdirSync(`${target}.restoring-20261128T061500Z-ab12cd-1764310500001`)
    writeFileSync(join(root, 'data.restoring-notes'), 'not ours')
    const said = await recoverTarget({kind: 'app-data', dir: target}, undefined, await temp())
    assert.equal(readFileSync(join(target, 'mlflow.db'), 'utf8'), 'old-db')
    assert.deepEqual(readdirSync(root).sort(), ['data', 'data.restoring-notes'])
    assert.equal(said.length, 2, said.join('\n'))
    mkdirSync(`${target}.replaced-20261128T061500Z-ab12cd-1764310500002`)
    assert.match(
      (await recoverTarget({kind: 'app-data', dir: target}, undefined, await temp())).join(),
      /moved aside.*Compare them/,
    )
    assert.ok(existsSync(`${target}.replaced-20261128T061500Z-ab12cd-1764310500002`))
  })
})

describe('scratch space', () => {
  it("is private, in the given tree, and a dead run's directory is found by the next run while a live one is not", async () => {
    const root = await temp()
    const scratch = await openScratch(root)
    assert.ok(scratch.path.startsWith(join(root, SCRATCH_DIR)))
    const child = spawn(process.execPath, ['-e', ''])
    const deadPid = await new Promise<number>((resolve) => child.once('exit', () => resolve(child.pid!)))
    const dead = join(root, SCRATCH_DIR, `run-${deadPid}-00@${hostname()}`)
    const elsewhere = join(root, SCRATCH_DIR, `run-${deadPid}-01@another-host`)
    mkdirSync(dead)
    mkdirSync(elsewhere)
    assert.deepEqual(await deadRuns(root), [dead], "not our own run, not another host's")
    await scratch.remove()
    assert.ok(!existsSync(scratch.path))
  })
})

describe('repository lock', () => {
  it('an empty lock (a run that could not write it) is taken over once it is a minute old, not before', async () => {
    const repo = await temp()
    writeFileSync(join(repo, LOCK), '')
    await assert.rejects(lockRepo(repo), (e: Error & {code?: string}) => e.code === 'REPO_LOCKED')
    const old = (Date.now() - 120_000) / 1000
    utimesSync(join(repo, LOCK), old, old)
    const stale: string[] = []
    const release = await lockRepo(repo, (message) => stale.push(message))
    assert.match(stale.join(), /took over an empty lock/)
    assert.equal(
      JSON.parse(readFileSync(join(repo, LOCK), 'utf8')).pid,
      process.pid,
      'never empty: written before it is linked into place',
    )
    await release()
    assert.deepEqual(readdirSync(repo), [], 'no temp file left behind')
  })
})

describe('paths that never end well end with an error', () => {
  it("makeDirs under /proc fails at once with PATH_UNUSABLE (Node's recursive mkdir never returns there)", async (t) => {
    if (!existsSync('/proc/self')) return t.skip('no /proc on this system')
    await assert.rejects(
      makeDirs('/proc/mlflowctl-test/x'),
      (e: Error & {code?: string}) => e.code === 'PATH_UNUSABLE' && /\/proc\/mlflowctl-test\/x/.test(e.message),
    )
    const file = join(await temp(), 'file')
    writeFileSync(file, 'x')
    await assert.rejects(makeDirs(join(file, 'sub')), (e: Error & {code?: string}) => e.code === 'PATH_INVALID')
  })

  it('a restore target of the wrong kind is refused, and a parent directory points at the data directory', async () => {
    const root = await temp()
    const db = join(root, 'mlflow.db')
    writeFileSync(db, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(84)]))
    await assert.rejects(
      inspectTarget({kind: 'app-data', dir: db}, undefined, undefined),
      (e: Error & {code?: string}) =>
        e.code === 'TARGET_INVALID' && /is a file, not an app-data directory.*sqlite:\/\/\//.test(e.message),
    )
    await assert.rejects(
      inspectTarget({kind: 'sqlite', path: root}, undefined, undefined),
      (e: Error & {code?: string}) => e.code === 'TARGET_INVALID' && /is a directory/.test(e.message),
    )
    const notes = join(root, 'notes.txt')
    writeFileSync(notes, 'precious')
    await assert.rejects(
      inspectTarget({kind: 'sqlite', path: notes}, undefined, undefined),
      (e: Error & {code?: string}) =>
        e.code === 'TARGET_INVALID' && /not a SQLite database.*even with --force/.test(e.message),
    )
    const parent = await temp()
    mkdirSync(join(parent, 'data'))
    writeFileSync(join(parent, 'data', 'mlflow.db'), 'x')
    writeFileSync(join(parent, 'important.txt'), 'keep me')
    const inspection = await inspectTarget({kind: 'app-data', dir: parent}, undefined, undefined)
    assert.deepEqual(
      [inspection.holdsData, inspection.foreign, inspection.didYouMean],
      [true, ['data/', 'important.txt'], join(parent, 'data')],
    )
    const fresh = await temp()
    mkdirSync(join(fresh, 'artifacts'))
    mkdirSync(join(fresh, 'mlflowctl'))
    assert.equal(
      (await inspectTarget({kind: 'app-data', dir: fresh}, undefined, undefined)).holdsData,
      false,
      "an empty artifacts/ and the extension's state are not data",
    )
  })
})
