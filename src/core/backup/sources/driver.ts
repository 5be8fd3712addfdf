/**
 * What `backup create` does differently per kind of source, behind one interface: where its database and artifacts
 * are, how the database is exported, and how the source is named in manifests, history and messages. create.ts
 * picks the driver once (sources/index.ts) and never asks for the kind again. Pure: I/O goes through CreateDeps.
 */
import {describeObject, foreignObjects} from '../schema-objects.js'
import {SQLITE_FILE_ENTRY, type BackupFormat} from '../format.js'
import type {BackupSourceSpec, CreateDeps, CreateOptions, TablesExported} from '../create.js'

/** Where a source's database and artifacts are on this machine, and how messages name it. */
export interface Located {
  db?: string
  artifacts?: string
  location: string
}

export type Exported = TablesExported & {format: BackupFormat; snapshot?: string}

export interface BackupSourceDriver<S extends BackupSourceSpec = BackupSourceSpec> {
  /** The database engine the manifest records. */
  engine: 'sqlite' | 'postgresql'
  /**
   * Located before the lock is taken, so that a wrong path fails fast; undefined for a source that must be fetched
   * first (under the lock, into scratch space). @throws UsageError SOURCE_NOT_FOUND
   */
  locate(source: S, deps: CreateDeps, options: CreateOptions): Promise<Located | undefined>
  /** The source on this machine, under the lock: what locate found, or what was fetched into `scratch`. */
  reach(source: S, located: Located | undefined, deps: CreateDeps, scratch: string): Promise<Located>
  /** Format 2: the database as the archive carries it (a SQLite snapshot file, or each table's COPY text). */
  exportDatabase(source: S, db: string, deps: CreateDeps, scratch: string): Promise<Exported>
  /** What the manifest's source records besides kind, location and engine. */
  manifestExtras(source: S): Record<string, string>
  /** Where the source is, as the history ledger names it (file:// for local paths). */
  historyLocation(source: S): string
  /** What of the source must never be printed (a database URL's password in the forms a driver may print it). */
  secrets(source: S): string[]
}

/**
 * SQLite: a snapshot file through the online backup API, archived as it is. What MLflow does not make (another
 * application's table, a trigger, a view) is left out of the copy, as a PostgreSQL source's other tables are: a
 * restore would refuse it.
 */
export async function exportSqlite(db: string, deps: CreateDeps, scratch: string): Promise<Exported> {
  const snapshot = deps.paths.join(scratch, 'snapshot.db')
  await deps.source.snapshotSqlite(db, snapshot)
  let described = deps.source.describeSnapshot(snapshot)
  const schema = described.alembicRevision ? await deps.source.expectedSchema(described.alembicRevision) : undefined
  const foreign = schema ? foreignObjects(described.objects, schema) : []
  if (foreign.length > 0) {
    await deps.source.dropSnapshotObjects(
      snapshot,
      foreign.map((f) => f.object),
    )
    described = deps.source.describeSnapshot(snapshot)
  }
  return {
    rowCounts: described.rowCounts,
    alembicRevision: described.alembicRevision,
    skipped: foreign.map((f) => describeObject(f.object)),
    files: [{name: SQLITE_FILE_ENTRY, file: snapshot}],
    format: 2,
    snapshot,
  }
}

/** A source on this machine is located once; reaching it under the lock takes what was found. */
export const alreadyLocated = async (_source: unknown, located: Located | undefined) => located!
