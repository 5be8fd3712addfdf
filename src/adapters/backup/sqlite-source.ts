// The SQLite side of a backup: a consistent snapshot through SQLite's online backup API (safe while MLflow
// writes: the copy restarts if another connection changes the source), which format 2 archives as it is, and the
// catalog readers that describe it (tables, row counts, revision, artifact locations).
import {createReadStream, statSync} from 'node:fs'

import Database from 'better-sqlite3'

import {ARTIFACT_LOCATION_COLUMNS, type LocationColumn} from '../../core/backup/artifact-locations.js'
import type {SchemaObject} from '../../core/backup/schema-objects.js'
import type {LiveDatabase} from '../../core/backup/create.js'
import {quoteIdentifier} from '../../core/backup/tables.js'

export async function snapshotSqlite(source: string, target: string): Promise<void> {
  const db = new Database(source, {readonly: true, fileMustExist: true})
  try {
    await db.backup(target)
  } finally {
    db.close()
  }
  // The copy keeps the source's journal mode; in WAL mode it would need -wal/-shm files beside it wherever it is
  // opened. Format 2 archives it as one self-contained file.
  const copy = new Database(target, {fileMustExist: true})
  try {
    copy.pragma('journal_mode = DELETE')
  } finally {
    copy.close()
  }
}

/** The tables of an open SQLite database, SQLite's own left out. Reads only. */
export function tableNames(db: Database.Database): string[] {
  return db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    .pluck()
    .all() as string[]
}

/** Rows per table. Reads only. */
export function rowCountsOf(db: Database.Database, names = tableNames(db)): Record<string, number> {
  return Object.fromEntries(
    names.map((name) => [
      name,
      db
        .prepare(`SELECT count(*) FROM ${quoteIdentifier(name)}`)
        .pluck()
        .get() as number,
    ]),
  )
}

/** The alembic revision MLflow stamped, or null for a database without one. Reads only. */
export function alembicRevisionOf(db: Database.Database, names = tableNames(db)): string | null {
  if (!names.includes('alembic_version')) return null
  return (db.prepare('SELECT version_num FROM alembic_version').pluck().get() as string | undefined) ?? null
}

/** The artifact-location columns (core/backup/artifact-locations.ts) that exist in this database's schema. */
export function locationColumnsIn(db: Database.Database): LocationColumn[] {
  return ARTIFACT_LOCATION_COLUMNS.filter(({table, column, onlyWhere}) => {
    const columns = (db.prepare(`PRAGMA table_info(${quoteIdentifier(table)})`).all() as Array<{name: string}>).map(
      (c) => c.name,
    )
    return columns.includes(column) && (!onlyWhere || columns.includes(onlyWhere.column))
  })
}

/** Format 2: what the manifest says about a snapshot file (row counts per table, the alembic revision), and its
 * schema. Reads only. */
export function describeSqliteSnapshot(snapshot: string): {
  rowCounts: Record<string, number>
  alembicRevision: string | null
  objects: SchemaObject[]
} {
  const db = new Database(snapshot, {readonly: true, fileMustExist: true})
  try {
    const names = tableNames(db)
    const rowCounts = rowCountsOf(db, names)
    const revision = alembicRevisionOf(db, names)
    return {rowCounts, alembicRevision: revision, objects: schemaObjectsOf(db)}
  } finally {
    db.close()
  }
}

/** The artifact URIs a SQLite file's rows point at (runs, logged models, model versions, trace tags). Reads only. */
export function sqliteArtifactReferences(file: string): string[] {
  const db = new Database(file, {readonly: true, fileMustExist: true})
  try {
    const uris: string[] = []
    for (const {table, column, onlyWhere} of locationColumnsIn(db)) {
      if (table === 'experiments') continue // an experiment's root covers everything under it
      const where = onlyWhere ? ` WHERE ${quoteIdentifier(onlyWhere.column)} = ?` : ''
      const rows = db
        .prepare(`SELECT ${quoteIdentifier(column)} AS uri FROM ${quoteIdentifier(table)}${where}`)
        .raw(true)
        .iterate(...(onlyWhere ? [onlyWhere.equals] : [])) as IterableIterator<[unknown]>
      for (const [uri] of rows) if (typeof uri === 'string') uris.push(uri)
    }
    return uris
  } finally {
    db.close()
  }
}

/** Every object in a SQLite file's schema (sqlite_master). Reads only. */
export function schemaObjectsOf(db: Database.Database): SchemaObject[] {
  return db.prepare("SELECT type, name, tbl_name AS 'table', sql FROM sqlite_master").all() as SchemaObject[]
}

/** Drops objects from a scratch copy of a database (views and triggers first, then tables). Writes. */
export function dropSchemaObjects(file: string, objects: SchemaObject[]): void {
  const db = new Database(file, {fileMustExist: true})
  try {
    const order = ['view', 'trigger', 'table'] as const
    db.transaction(() => {
      for (const type of order)
        for (const object of objects.filter((o) => o.type === type))
          db.exec(`DROP ${type.toUpperCase()} IF EXISTS ${quoteIdentifier(object.name)}`)
    })()
  } finally {
    db.close()
  }
}

/** Rows per table of a database file. Reads only. */
export function rowCountsOfFile(file: string): Record<string, number> {
  const db = new Database(file, {readonly: true, fileMustExist: true})
  try {
    return rowCountsOf(db)
  } finally {
    db.close()
  }
}

/**
 * The database read where it is, without the online-backup copy, when that is provably consistent: in WAL mode, once
 * a checkpoint has emptied the WAL, a read transaction that starts with no WAL frames reads the database file alone,
 * and no checkpoint may write to that file while the transaction lasts (writers only append to the WAL). Undefined
 * when that cannot be had (rollback-journal mode, where holding the read would stall MLflow's writers, or a WAL that
 * a busy server keeps non-empty): the caller then copies with the backup API.
 */
export function readLiveSqlite(path: string): LiveDatabase | undefined {
  let db: Database.Database
  try {
    db = new Database(path, {fileMustExist: true, timeout: 1000})
  } catch {
    return undefined // read-only for this user, say: the copy needs only read access, and says what is wrong if not
  }
  let open = true
  const close = () => {
    if (!open) return
    open = false
    if (db.inTransaction) db.exec('ROLLBACK')
    db.close()
  }
  try {
    if (String(db.pragma('journal_mode', {simple: true})).toLowerCase() !== 'wal') return (close(), undefined)
    const [checkpoint] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{busy: number; log: number}>
    if (checkpoint.busy !== 0 || checkpoint.log !== 0) return (close(), undefined)
    db.exec('BEGIN')
    const names = tableNames(db) // the first read fixes the transaction's snapshot
    const wal = statSync(`${path}-wal`, {throwIfNoEntry: false})
    if (wal && wal.size > 0) return (close(), undefined) // a writer got in first: its frames are part of the snapshot
    const described = {
      rowCounts: rowCountsOf(db, names),
      alembicRevision: alembicRevisionOf(db, names),
      objects: schemaObjectsOf(db),
    }
    return {
      ...described,
      async *read() {
        let first = true
        for await (const piece of createReadStream(path, {highWaterMark: 4 * 1024 * 1024})) {
          const bytes = piece as Buffer
          // Bytes 18 and 19 of the header say WAL (2); a restored file stands alone, as the backup copy does (1).
          if (first && bytes.length > 19) bytes[18] = bytes[19] = 1
          first = false
          yield bytes
        }
      },
      close,
    }
  } catch {
    close()
    return undefined // a busy or damaged file: the online-backup copy retries, or reports it
  }
}
