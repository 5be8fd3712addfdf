// The SQLite side of a backup: a consistent snapshot through SQLite's online backup API (safe while MLflow
// writes: the copy restarts if another connection changes the source), which format 2 archives as it is, and the
// catalog readers that describe it (tables, row counts, revision, artifact locations).
import Database from 'better-sqlite3'

import {ARTIFACT_LOCATION_COLUMNS, type LocationColumn} from '../../core/backup/artifact-locations.js'
import type {SchemaObject} from '../../core/backup/schema-objects.js'
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
