// Swapping restored data into place so that a kill at any instruction leaves the old data or the new, never
// neither, and never a database without its artifacts. Before the first rename a journal is written (fsynced)
// into every scratch directory the swap uses; each live path is renamed aside, then the staged one renamed in;
// after the new data is checked the journal says "committed" and only then are the old files deleted. The next
// run that touches the target reads the journal of a dead run and finishes (committed) or undoes (prepared) it.
// Renames stay on one file system: staged and aside paths live in scratch directories beside the live ones.
import {readFile, rename, rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

import {ExternalError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {fsFailure, pathKind, syncDir, writeDurable} from './safe-fs.js'

export const JOURNAL = 'swap-journal.json'

export interface SwapEntry {
  /** The path the server reads (mlflow.db, artifacts/, mlflow.db-wal). */
  live: string
  /** The new data, built beside it; absent for files that only go (a stale -wal or -shm of the old database). */
  staged?: string
  /** Where the old data waits until the new data is committed. */
  aside: string
  /** Whether there was old data at `live` when the journal was written. */
  hadLive?: boolean
}

/** A database whose swap commits elsewhere (PostgreSQL: one transaction); the mark tells whether it did. */
export interface ExternalCommit {
  display: string
  mark: string
}

export interface SwapJournal {
  v: 1
  state: 'prepared' | 'committed'
  createdAt: string
  pid: number
  entries: SwapEntry[]
  database?: ExternalCommit
  /** Every copy of this journal (one per scratch directory the swap uses), removed together. */
  copies: string[]
}

const exists = async (path: string) => (await pathKind(path)) !== 'missing'

async function move(from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (error) {
    throw fsFailure(error, `move ${from} to`, to)
  }
}

async function writeJournal(journal: SwapJournal): Promise<void> {
  for (const copy of journal.copies) await writeDurable(copy, `${JSON.stringify(journal, null, 2)}\n`)
}

/** Puts every entry back as it was before the swap: the new data back to its staged path, the old back live. */
async function undo(journal: SwapJournal): Promise<void> {
  for (const entry of [...journal.entries].reverse()) {
    if (await exists(entry.aside)) {
      if (await exists(entry.live)) await move(entry.live, entry.staged ?? `${entry.aside}.discarded`)
      await move(entry.aside, entry.live)
    } else if (!entry.hadLive && entry.staged && (await exists(entry.live)) && !(await exists(entry.staged))) {
      await move(entry.live, entry.staged)
    }
  }
  await syncDirs(journal)
}

/** Completes every entry's two renames, whichever of them a killed run had done. */
async function rollForward(journal: SwapJournal): Promise<void> {
  for (const entry of journal.entries) {
    if (entry.hadLive && !(await exists(entry.aside))) await move(entry.live, entry.aside)
    if (entry.staged && (await exists(entry.staged))) await move(entry.staged, entry.live)
  }
  await syncDirs(journal)
}

async function syncDirs(journal: SwapJournal): Promise<void> {
  for (const dir of new Set(journal.entries.map((entry) => dirname(entry.live)))) await syncDir(dir)
}

async function finish(journal: SwapJournal): Promise<void> {
  for (const entry of journal.entries) await rm(entry.aside, {recursive: true, force: true})
  for (const copy of journal.copies) await rm(copy, {force: true})
}

export interface SwapOptions {
  journalCopies: string[]
  /** Runs after every rename, before anything is committed: the new data must be in place and sound. */
  check(): Promise<void>
  /** An external database's commit (PostgreSQL), between the renames and the journal's "committed". */
  database?: ExternalCommit & {commit(): Promise<void>}
}

/**
 * Swaps the staged paths in. On any error the old data is put back before the error is rethrown; a kill is
 * recovered by the next run (recoverSwap).
 * @throws whatever the renames, the check or the commit throw, after undoing
 */
export async function swapIn(entries: SwapEntry[], options: SwapOptions): Promise<void> {
  const journal: SwapJournal = {
    v: 1,
    state: 'prepared',
    createdAt: new Date().toISOString(),
    pid: process.pid,
    entries: [],
    copies: options.journalCopies,
    database: options.database ? {display: options.database.display, mark: options.database.mark} : undefined,
  }
  for (const entry of entries) journal.entries.push({...entry, hadLive: await exists(entry.live)})
  await writeJournal(journal)
  faultPoint('restore:journal-written')
  try {
    for (const entry of journal.entries) {
      if (entry.hadLive) await move(entry.live, entry.aside)
      faultPoint(`restore:aside:${basename(entry.live)}`)
      if (entry.staged) await move(entry.staged, entry.live)
      faultPoint(`restore:in:${basename(entry.live)}`)
    }
    await syncDirs(journal)
    await options.check()
    if (options.database) {
      await options.database.commit()
      faultPoint('restore:database-committed')
    }
  } catch (error) {
    // A database that may have committed (the commit call itself failed part-way) is judged by the next run.
    await undo(journal)
    for (const copy of journal.copies) await rm(copy, {force: true})
    throw error
  }
  journal.state = 'committed'
  await writeJournal(journal)
  faultPoint('restore:committed')
  await finish(journal)
}

/**
 * Finishes or undoes the swap of a dead run from its journal. A prepared journal with an external database is
 * rolled forward when `databaseCommitted` says the mark is there, undone when it says it is not, and left for
 * later when it cannot tell (undefined: the caller has no connection to that database).
 * @returns a sentence for the operator, or undefined when there was no journal
 */
export async function recoverSwap(
  journalPath: string,
  databaseCommitted: (database: ExternalCommit) => Promise<boolean | undefined> = async () => undefined,
): Promise<string | undefined> {
  let journal: SwapJournal
  try {
    journal = JSON.parse(await readFile(journalPath, 'utf8')) as SwapJournal
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ExternalError(
      'SWAP_JOURNAL_UNREADABLE',
      `${journalPath} records an interrupted restore but cannot be read: ${(error as Error).message}.`,
      {suggestions: [`Compare ${dirname(journalPath)} with the target by hand; nothing was changed.`]},
    )
  }
  const lives = journal.entries
    .filter((entry) => entry.staged)
    .map((entry) => entry.live)
    .join(', ')
  if (journal.state === 'committed') {
    await finish(journal)
    return `finished an interrupted restore of ${lives} (it had committed; removed the old data kept aside)`
  }
  const committed = journal.database ? await databaseCommitted(journal.database) : false
  if (committed === undefined)
    return `an interrupted restore into ${journal.database!.display} (and ${lives}) is pending: run the restore into that database again to finish or undo it`
  if (committed) {
    await rollForward(journal)
    await finish(journal)
    return `finished an interrupted restore of ${lives} (${journal.database!.display} had committed)`
  }
  await undo(journal)
  for (const copy of journal.copies) await rm(copy, {force: true})
  return `undid an interrupted restore of ${lives}: the previous data is back in place`
}

/** The journal path inside a scratch run directory. */
export const journalIn = (scratchRun: string) => join(scratchRun, JOURNAL)
