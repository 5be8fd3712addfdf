// Swapping restored data into place so that a kill at any instruction leaves the old data or the new, never
// neither, and never a database without its artifacts. Before the first rename a journal is written (fsynced)
// into every scratch directory the swap uses, with the fingerprint of each staged path (fs/fingerprint.ts); every
// live path is renamed aside first (a SQLite database's -wal and -shm before anything goes in, so no opener ever
// pairs the new database with the old journal files), then the staged ones renamed in; after the new data is
// checked the journal says "committed" and only then are the old files deleted.
// The next run that touches the target reads the journal of a dead run and finishes (committed) or undoes
// (prepared) it, but only while each live path still holds exactly what the swap left there: a server that
// started on the new data and was written to, or a database recreated by MLflow, stops the recovery with
// RECOVERY_CONFLICT, both versions kept, until the operator chooses (`--keep live` or `--keep previous`).
// Renames stay on one file system: staged and aside paths live in scratch directories beside the live ones.
import {readFile, rename, rm} from 'node:fs/promises'
import {hostname} from 'node:os'
import {basename, dirname, join} from 'node:path'

import type {KeepChoice} from '../../core/backup/recover.js'
import {ExternalError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {describePrint, fingerprint, samePrint, type Fingerprint} from './fingerprint.js'
import {fsFailure, makeDirs, pathKind, syncDir, writeDurable} from './safe-fs.js'

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
  /** The staged data when the journal was written: what `live` holds once swapped in, as long as no one writes. */
  newPrint?: Fingerprint
  /** The old data at `live` then (a directory by its inode only). */
  oldPrint?: Fingerprint
}

/** A database whose swap commits elsewhere (PostgreSQL: one transaction); the mark tells whether it did. */
export interface ExternalCommit {
  display: string
  mark: string
}

export interface SwapJournal {
  /** 2: with fingerprints. A journal of version 1 (none) is recovered only where nothing could have been written. */
  v: 1 | 2
  state: 'prepared' | 'committed'
  createdAt: string
  pid: number
  host?: string
  entries: SwapEntry[]
  database?: ExternalCommit
  /** Every copy of this journal (one per scratch directory the swap uses), removed together. */
  copies: string[]
}

export type {KeepChoice}

interface Move {
  from: string
  to: string
}

/** What recovery would do, or why it must not: every entry checked before anything moves. */
interface RecoveryPlan {
  moves: Move[]
  conflicts: string[]
}

const exists = async (path: string) => (await pathKind(path)) !== 'missing'

async function move({from, to}: Move): Promise<void> {
  try {
    await makeDirs(dirname(to))
    await rename(from, to)
  } catch (error) {
    throw fsFailure(error, `move ${from} to`, to)
  }
}

async function writeJournal(journal: SwapJournal): Promise<void> {
  for (const copy of journal.copies) await writeDurable(copy, `${JSON.stringify(journal, null, 2)}\n`)
}

/** The live path holds what it held before the swap began (or still nothing). */
async function stillOld(entry: SwapEntry): Promise<boolean> {
  const live = await fingerprint(entry.live, true)
  return entry.hadLive ? entry.oldPrint !== undefined && samePrint(live, entry.oldPrint) : live === undefined
}

/** The live path holds the swapped-in data, untouched since the journal fingerprinted it. */
async function stillNew(entry: SwapEntry): Promise<boolean> {
  if (!entry.newPrint) return false
  return samePrint(await fingerprint(entry.live), entry.newPrint)
}

const changed = async (entry: SwapEntry) =>
  `${entry.live} now holds ${describePrint(await fingerprint(entry.live, true))}, not what the restore left there`

/** Puts every entry back as it was before the swap, if every live path is as the swap left it. Reads only. */
async function undoPlan(journal: SwapJournal): Promise<RecoveryPlan> {
  const plan: RecoveryPlan = {moves: [], conflicts: []}
  // Killed before its first rename: nothing of the swap happened, whatever the server wrote since.
  const untouched = await Promise.all(
    journal.entries.map(async (e) => !(await exists(e.aside)) && (!e.staged || (await exists(e.staged)))),
  )
  if (untouched.every(Boolean)) return plan
  for (const entry of [...journal.entries].reverse()) {
    const live = await exists(entry.live)
    if (await exists(entry.aside)) {
      if (!live) plan.moves.push({from: entry.aside, to: entry.live})
      else if (await stillNew(entry))
        plan.moves.push({from: entry.live, to: entry.staged!}, {from: entry.aside, to: entry.live})
      else plan.conflicts.push(await changed(entry))
    } else if (await stillOld(entry)) continue
    else if (!entry.hadLive && entry.staged && !(await exists(entry.staged)) && (await stillNew(entry)))
      plan.moves.push({from: entry.live, to: entry.staged})
    else if (entry.staged && (await exists(entry.staged)) && entry.hadLive) continue
    else plan.conflicts.push(await changed(entry))
  }
  return plan
}

/** Completes every entry's renames (the database committed), if every live path is as the swap left it. */
async function forwardPlan(journal: SwapJournal): Promise<RecoveryPlan> {
  const plan: RecoveryPlan = {moves: [], conflicts: []}
  for (const entry of journal.entries) {
    if (entry.staged && (await stillNew(entry))) continue
    const staged = entry.staged !== undefined && (await exists(entry.staged))
    const aside = await exists(entry.aside)
    if (!(await exists(entry.live))) {
      if (staged) plan.moves.push({from: entry.staged!, to: entry.live})
      else if (entry.staged) plan.conflicts.push(`${entry.live} is missing, and so is the restored data for it`)
    } else if (!aside && entry.hadLive && (await stillOld(entry))) {
      plan.moves.push({from: entry.live, to: entry.aside})
      if (staged) plan.moves.push({from: entry.staged!, to: entry.live})
    } else plan.conflicts.push(await changed(entry))
  }
  return plan
}

async function syncDirs(journal: SwapJournal): Promise<void> {
  for (const dir of new Set(journal.entries.map((entry) => dirname(entry.live)))) await syncDir(dir)
}

async function apply(journal: SwapJournal, plan: RecoveryPlan): Promise<void> {
  for (const step of plan.moves) await move(step)
  await syncDirs(journal)
}

async function finish(journal: SwapJournal): Promise<void> {
  for (const entry of journal.entries) await rm(entry.aside, {recursive: true, force: true})
  await forget(journal)
}

async function forget(journal: SwapJournal): Promise<void> {
  for (const copy of journal.copies) await rm(copy, {force: true})
}

/** The refusal of a recovery whose target was written to since the kill; both versions stay where they are. */
function conflictError(journal: SwapJournal, conflicts: string[]): ExternalError {
  const asides = journal.entries.map((entry) => entry.aside)
  return new ExternalError(
    'RECOVERY_CONFLICT',
    `A restore (pid ${journal.pid} on ${journal.host ?? '?'}, ${journal.createdAt}) was stopped before it committed, and its target was changed since: ${conflicts.join('; ')}. Nothing was touched: the data in place stays, and the previous data waits in ${dirname(asides[0])}.`,
  )
}

/** The journal of a swap about to begin: each entry with what is live and what is staged now. Reads only. */
export async function journalFor(
  entries: SwapEntry[],
  options: Pick<SwapOptions, 'journalCopies' | 'database'>,
): Promise<SwapJournal> {
  const journal: SwapJournal = {
    v: 2,
    state: 'prepared',
    createdAt: new Date().toISOString(),
    pid: process.pid,
    host: hostname(),
    entries: [],
    copies: options.journalCopies,
    database: options.database ? {display: options.database.display, mark: options.database.mark} : undefined,
  }
  for (const entry of entries) {
    const oldPrint = await fingerprint(entry.live, true)
    const newPrint = entry.staged ? await fingerprint(entry.staged) : undefined
    journal.entries.push({...entry, hadLive: oldPrint !== undefined, oldPrint, newPrint})
  }
  return journal
}

/**
 * Swaps the staged paths in. On any error the old data is put back before the error is rethrown (unless the target
 * was written to meanwhile: then RECOVERY_CONFLICT, both kept); a kill is recovered by the next run (recoverSwap).
 * @throws whatever the renames, the check or the commit throw, after undoing
 */
export async function swapIn(entries: SwapEntry[], options: SwapOptions): Promise<void> {
  const journal = await journalFor(entries, options)
  await writeJournal(journal)
  faultPoint('restore:journal-written')
  try {
    // Everything old goes aside first: the database's -wal and -shm are gone before a new database is there.
    for (const entry of journal.entries) {
      if (entry.hadLive) await move({from: entry.live, to: entry.aside})
      faultPoint(`restore:aside:${basename(entry.live)}`)
    }
    for (const entry of journal.entries) {
      if (!entry.staged) continue
      await move({from: entry.staged, to: entry.live})
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
    const plan = await undoPlan(journal)
    if (plan.conflicts.length > 0) throw conflictError(journal, plan.conflicts)
    await apply(journal, plan)
    await forget(journal)
    throw error
  }
  journal.state = 'committed'
  await writeJournal(journal)
  faultPoint('restore:committed')
  await finish(journal)
}

export interface SwapOptions {
  journalCopies: string[]
  /** Runs after every rename, before anything is committed: the new data must be in place and sound. */
  check(): Promise<void>
  /** An external database's commit (PostgreSQL), between the renames and the journal's "committed". */
  database?: ExternalCommit & {commit(): Promise<void>}
}

/**
 * The operator's choice for a conflicting journal: the version not kept moves into mlflowctl-kept-TIME/ beside its
 * live path (a rename: nothing is deleted). Returns the sentence that says where.
 */
async function settle(journal: SwapJournal, keep: KeepChoice, committed: boolean): Promise<string> {
  if (keep === 'previous' && committed)
    throw new ExternalError(
      'RECOVERY_CONFLICT',
      `${journal.database?.display ?? 'The database'} already committed the restored data: only --keep live matches it.`,
    )
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
  const keptPath = (live: string) => join(dirname(live), `mlflowctl-kept-${stamp}`, basename(live))
  const kept: string[] = []
  const entries = keep === 'live' ? journal.entries : [...journal.entries].reverse()
  for (const entry of entries) {
    if (keep === 'previous' && (await exists(entry.live))) {
      await move({from: entry.live, to: keptPath(entry.live)})
      kept.push(keptPath(entry.live))
    }
    if (!(await exists(entry.aside))) continue
    const to = keep === 'live' ? keptPath(entry.live) : entry.live
    await move({from: entry.aside, to})
    if (keep === 'live') kept.push(to)
  }
  await syncDirs(journal)
  await forget(journal)
  const what =
    keep === 'live'
      ? 'the data that was in place stays; the previous data'
      : 'the previous data is back; what was in place'
  return `settled an interrupted restore (--keep ${keep}): ${what} moved to ${kept.length > 0 ? kept.join(', ') : 'nowhere (there was none)'}; delete it once you no longer need it`
}

/**
 * Finishes or undoes the swap of a dead run from its journal. A prepared journal with an external database is
 * rolled forward when `databaseCommitted` says the mark is there, undone when it says it is not, and left for
 * later when it cannot tell (undefined: the caller has no connection to that database). When a live path was
 * changed since the swap left it, nothing is touched (RECOVERY_CONFLICT) unless `keep` says which version stays.
 * @returns a sentence for the operator, or undefined when there was no journal
 * @throws ExternalError RECOVERY_CONFLICT, SWAP_JOURNAL_UNREADABLE
 */
export async function recoverSwap(
  journalPath: string,
  databaseCommitted: (database: ExternalCommit) => Promise<boolean | undefined> = async () => undefined,
  keep?: KeepChoice,
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
  const plan = committed ? await forwardPlan(journal) : await undoPlan(journal)
  if (plan.conflicts.length > 0) {
    if (!keep) throw conflictError(journal, plan.conflicts)
    return settle(journal, keep, committed)
  }
  await apply(journal, plan)
  if (committed) {
    await finish(journal)
    return `finished an interrupted restore of ${lives} (${journal.database!.display} had committed)`
  }
  await forget(journal)
  return plan.moves.length > 0
    ? `undid an interrupted restore of ${lives}: the previous data is back in place`
    : `undid an interrupted restore of ${lives}: it had not moved anything yet`
}

/** The journal path inside a scratch run directory. */
export const journalIn = (scratchRun: string) => join(scratchRun, JOURNAL)
