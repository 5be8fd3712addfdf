// Rewrites the artifact locations in the extracted table files (db/<table>.jsonl) of a restore that moves the store,
// line by line (memory stays flat), before the loader reads them. Which columns: core/backup/artifact-locations.ts.
import {createReadStream, createWriteStream} from 'node:fs'
import {readFile, rename} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {once} from 'node:events'

import Database from 'better-sqlite3'

import {locationPositions} from '../../core/backup/artifact-locations.js'
import type {TableSchema} from '../../core/backup/format.js'
import {encodeCopyLine} from '../../core/backup/pg-text.js'
import {locationColumnsIn} from './sqlite-source.js'
import {parseTableLine, tableFileOf} from './table-files.js'
import {quoteIdentifier} from '../../core/backup/tables.js'

/** Rewrites every location `rewrite` changes; returns "table.column" → rows changed. Rewrites files in `dbDir`. */
export async function rewriteLocationsInTableFiles(
  dbDir: string,
  rewrite: (value: string) => string | undefined,
): Promise<Record<string, number>> {
  const schema = JSON.parse(await readFile(join(dbDir, 'schema.json'), 'utf8')) as {tables: TableSchema[]}
  const counts: Record<string, number> = {}
  for (const table of schema.tables) {
    const targets = locationPositions(table)
    // Format 1 and SQLite→PostgreSQL conversions: JSON lines; format 2 of a PostgreSQL source: COPY text.
    const found = targets.length > 0 ? await tableFileOf(dbDir, table.name) : undefined
    if (!found) continue
    const rewritten = `${found.file}.rewritten`
    const out = createWriteStream(rewritten, {mode: 0o600})
    for await (const line of createInterface({input: createReadStream(found.file), crlfDelay: Infinity})) {
      if (!line) continue
      const row = parseTableLine(line, found.encoding)
      let changed = false
      for (const {key, at, where} of targets) {
        const value = row[at]
        if (typeof value !== 'string' || (where && row[where.at] !== where.equals)) continue
        const moved = rewrite(value)
        if (moved === undefined) continue
        row[at] = moved
        counts[key] = (counts[key] ?? 0) + 1
        changed = true
      }
      const encoded = !changed ? line : found.encoding === 'copy' ? encodeCopyLine(row) : JSON.stringify(row)
      if (!out.write(`${encoded}\n`)) await once(out, 'drain')
    }
    out.end()
    await once(out, 'finish')
    await rename(rewritten, found.file)
  }
  return counts
}

/** The same rewrite in a SQLite file (format 2), one transaction; returns "table.column" → rows changed. */
export async function rewriteLocationsInSqliteFile(
  file: string,
  rewrite: (value: string) => string | undefined,
): Promise<Record<string, number>> {
  const db = new Database(file, {fileMustExist: true})
  try {
    const counts: Record<string, number> = {}
    db.transaction(() => {
      for (const {table, column, onlyWhere} of locationColumnsIn(db)) {
        const where = onlyWhere ? ` WHERE ${quoteIdentifier(onlyWhere.column)} = ?` : ''
        const update = db.prepare(`UPDATE ${quoteIdentifier(table)} SET ${quoteIdentifier(column)} = ? WHERE rowid = ?`)
        const rows = db
          .prepare(`SELECT rowid, ${quoteIdentifier(column)} FROM ${quoteIdentifier(table)}${where}`)
          .raw(true)
          .all(...(onlyWhere ? [onlyWhere.equals] : [])) as Array<[number, unknown]>
        for (const [rowid, value] of rows) {
          const moved = typeof value === 'string' ? rewrite(value) : undefined
          if (moved === undefined) continue
          update.run(moved, rowid)
          counts[`${table}.${column}`] = (counts[`${table}.${column}`] ?? 0) + 1
        }
      }
    })()
    return counts
  } finally {
    db.close()
  }
}
