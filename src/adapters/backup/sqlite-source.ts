// The SQLite side of a backup: a consistent snapshot through SQLite's online backup API (safe while MLflow
// writes: the copy restarts if another connection changes the source), then every table streamed to a
// typed JSON-lines file, in foreign-key order.
import {join} from 'node:path'

import Database from 'better-sqlite3'

import {encodeValue, type TableSchema} from '../../core/backup/format.js'
import {foreignKeyOrder} from '../../core/backup/tables.js'
import {openRowFile, writeSchemaFile, type TableExport} from './table-files.js'

export type {TableExport} from './table-files.js'

export async function snapshotSqlite(source: string, target: string): Promise<void> {
  const db = new Database(source, {readonly: true, fileMustExist: true})
  try {
    await db.backup(target)
  } finally {
    db.close()
  }
}

/** Streams rows with a small write buffer: memory stays flat whatever the table size. */
export function exportSqliteTables(snapshot: string, outDir: string): TableExport {
  const db = new Database(snapshot, {readonly: true, fileMustExist: true})
  try {
    const names = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{
        name: string
      }>
    ).map((row) => row.name)
    const references = Object.fromEntries(
      names.map((name) => [
        name,
        (db.prepare(`PRAGMA foreign_key_list("${name}")`).all() as Array<{table: string}>).map((fk) => fk.table),
      ]),
    )
    const schema: TableSchema[] = []
    const rowCounts: Record<string, number> = {}
    const files: Array<{name: string; file: string}> = []
    for (const table of foreignKeyOrder(names, references)) {
      // table_xinfo, not table_info: `SELECT *` returns generated columns (spans.duration_ns) too, and the
      // restore must know which value is which. Generated columns (hidden 2 or 3) are the database's to compute.
      const columns = (
        db.prepare(`PRAGMA table_xinfo("${table}")`).all() as Array<{name: string; type: string; hidden: number}>
      )
        .filter((column) => column.hidden === 0)
        .map((column) => ({name: column.name, type: column.type}))
      schema.push({name: table, columns})
      const file = join(outDir, `${table}.jsonl`)
      const rowFile = openRowFile(file)
      let count: number
      try {
        // rowid order: stable, and cheap for SQLite; restore does not depend on it.
        const rows = db
          .prepare(`SELECT ${columns.map((column) => `"${column.name}"`).join(', ')} FROM "${table}"`)
          .raw(true)
          .safeIntegers(true)
          .iterate() as IterableIterator<unknown[]>
        for (const row of rows) rowFile.write(row.map(encodeValue))
      } finally {
        count = rowFile.close()
      }
      rowCounts[table] = count
      files.push({name: `db/${table}.jsonl`, file})
    }
    const revision = names.includes('alembic_version')
      ? ((db.prepare('SELECT version_num FROM alembic_version').get() as {version_num: string} | undefined)
          ?.version_num ?? null)
      : null
    return {schema, rowCounts, alembicRevision: revision, files: [writeSchemaFile(outDir, 'sqlite', schema), ...files]}
  } finally {
    db.close()
  }
}
