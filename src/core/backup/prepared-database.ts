/**
 * A restore's database load in two steps: real MLflow prepares the target (the schema at the backup's revision),
 * which can start while the archive is still being read, then the rows go in and the result is committed.
 * Shared by `backup restore` and `backup verify --deep`.
 */

/** Where a restore's rows come from: a SQLite file (format 2), or one table file per table in a directory. */
export type RowSource = {sqliteFile: string} | {tableFiles: string}

export interface PrepareOptions {
  /** Replace MLflow's tables of a target that holds some (only after a safety backup). */
  replace?: boolean
  /** PostgreSQL: written with the swap's commit, so a run killed around it can tell whether it happened. */
  mark?: string
  /** The backup's tables (its manifest's row counts). */
  tables: string[]
  /** PostgreSQL: the swap waits for commit(); else it commits as soon as the rows are in. */
  gated?: boolean
}

/** A target whose schema real MLflow has created, waiting for its rows. */
export interface PreparedDatabase {
  /** Loads the rows in bulk, then builds keys and indexes. */
  load(source: RowSource): Promise<{tables: number; rows: number}>
  /** PostgreSQL: swaps the staging tables in (one transaction); SQLite: done. */
  commit(): Promise<void>
  /** Leaves the target as it was. */
  abort(): Promise<void>
}

export type PrepareDatabase = (
  url: string,
  revision: string,
  dbDir: string,
  options: PrepareOptions,
) => Promise<PreparedDatabase>

/**
 * Waits for a prepared database, loads it and commits; undoes it when anything fails. `prepared` may have been
 * started long before (while the archive was read), so its own failure is awaited here.
 */
export async function loadPrepared(
  prepared: Promise<PreparedDatabase>,
  source: RowSource,
  beforeCommit: (commit: () => Promise<void>) => Promise<void> = (commit) => commit(),
): Promise<{tables: number; rows: number}> {
  const database = await prepared
  try {
    const loaded = await database.load(source)
    await beforeCommit(() => database.commit())
    return loaded
  } catch (error) {
    await database.abort()
    throw error
  }
}
