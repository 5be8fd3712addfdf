// The SQLite side of a backup: a consistent snapshot through SQLite's online backup API (safe while MLflow
// writes: the copy restarts if another connection changes the source), then every table streamed to a
// typed JSON-lines file, in foreign-key order.
import {closeSync, openSync, writeSync} from 'node:fs'
import {join} from 'node:path'

import Database from 'better-sqlite3'

import {encodeValue, type TableSchema} from '../../core/backup/format.js'
import {foreignKeyOrder} from '../../core/backup/tables.js'

export interface TableExport {
  schema: TableSchema[]
  rowCounts: Record<string, number>
  alembicRevision: string | null
  /** db/<table>.jsonl files, in order, plus db/schema.json */
  files: Array<{name: string; file: string}>
}

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
    const names = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{name: string}>).map((row) => row.name)
    const references = Object.fromEntries(names.map((name) => [name, (db.prepare(`PRAGMA foreign_key_list("${name}")`).all() as Array<{table: string}>).map((fk) => fk.table)]))
    const schema: TableSchema[] = []
    const rowCounts: Record<string, number> = {}
    const files: Array<{name: string; file: string}> = []
    for (const table of foreignKeyOrder(names, references)) {
      const columns = (db.prepare(`PRAGMA table_info("${table}")`).all() as Array<{name: string; type: string}>).map((column) => ({name: column.name, type: column.type}))
      schema.push({name: table, columns})
      const file = join(outDir, `${table}.jsonl`)
      const fd = openSync(file, 'w', 0o600)
      let buffered: string[] = []
      let size = 0
      let count = 0
      const flush = () => {
        if (buffered.length > 0) writeSync(fd, buffered.join(''))
        buffered = []
        size = 0
      }
      try {
        // rowid order: stable, and cheap for SQLite; restore does not depend on it.
        const rows = db.prepare(`SELECT * FROM "${table}"`).raw(true).safeIntegers(true).iterate() as IterableIterator<unknown[]>
        for (const row of rows) {
          const line = `${JSON.stringify(row.map(encodeValue))}\n`
          buffered.push(line)
          size += line.length
          count++
          if (size > 1 << 20) flush()
        }
        flush()
      } finally {
        closeSync(fd)
      }
      rowCounts[table] = count
      files.push({name: `db/${table}.jsonl`, file})
    }
    const revision = names.includes('alembic_version') ? ((db.prepare('SELECT version_num FROM alembic_version').get() as {version_num: string} | undefined)?.version_num ?? null) : null
    const schemaFile = join(outDir, 'schema.json')
    const fd = openSync(schemaFile, 'w', 0o600)
    writeSync(fd, `${JSON.stringify({engine: 'sqlite', tables: schema}, null, 2)}\n`)
    closeSync(fd)
    return {schema, rowCounts, alembicRevision: revision, files: [{name: 'db/schema.json', file: schemaFile}, ...files]}
  } finally {
    db.close()
  }
}
