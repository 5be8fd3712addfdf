// Rewrites the artifact locations in the extracted table files (db/<table>.jsonl) of a restore that moves the store,
// line by line (memory stays flat), before the loader reads them. Which columns: core/backup/artifact-locations.ts.
import {createReadStream, createWriteStream} from 'node:fs'
import {readFile, rename} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {once} from 'node:events'

import Database from 'better-sqlite3'

import {ARTIFACT_LOCATION_COLUMNS} from '../../core/backup/artifact-locations.js'
import type {TableSchema} from '../../core/backup/format.js'
import {encodeCopyField, unescapeCopyField} from '../../core/backup/pg-text.js'
import {pathKind} from '../fs/safe-fs.js'

/** Rewrites every location `rewrite` changes; returns "table.column" → rows changed. Rewrites files in `dbDir`. */
export async function rewriteLocationsInTableFiles(
  dbDir: string,
  rewrite: (value: string) => string | undefined,
): Promise<Record<string, number>> {
  const schema = JSON.parse(await readFile(join(dbDir, 'schema.json'), 'utf8')) as {tables: TableSchema[]}
  const counts: Record<string, number> = {}
  for (const table of new Set(ARTIFACT_LOCATION_COLUMNS.map((column) => column.table))) {
    const columns = schema.tables.find((candidate) => candidate.name === table)?.columns
    // Format 1 and SQLite→PostgreSQL conversions: JSON lines; format 2 of a PostgreSQL source: COPY text.
    const copyText = (await pathKind(join(dbDir, `${table}.copy`))) === 'file'
    const file = join(dbDir, `${table}.${copyText ? 'copy' : 'jsonl'}`)
    if (!columns || (await pathKind(file)) !== 'file') continue
    const index = (name: string) => columns.findIndex((column) => column.name === name)
    const targets = ARTIFACT_LOCATION_COLUMNS.filter((column) => column.table === table)
      .map((column) => ({
        key: `${table}.${column.column}`,
        at: index(column.column),
        where: column.onlyWhere ? {at: index(column.onlyWhere.column), equals: column.onlyWhere.equals} : undefined,
      }))
      .filter((target) => target.at >= 0 && (!target.where || target.where.at >= 0))
    if (targets.length === 0) continue
    const rewritten = `${file}.rewritten`
    const out = createWriteStream(rewritten, {mode: 0o600})
    for await (const line of createInterface({input: createReadStream(file), crlfDelay: Infinity})) {
      if (!line) continue
      const row = copyText
        ? line.split('\t').map((field) => (field === '\\N' ? null : unescapeCopyField(field)))
        : (JSON.parse(line) as unknown[])
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
      const encoded = !changed ? line : copyText ? row.map(encodeCopyField).join('\t') : JSON.stringify(row)
      if (!out.write(`${encoded}\n`)) await once(out, 'drain')
    }
    out.end()
    await once(out, 'finish')
    await rename(rewritten, file)
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
      for (const {table, column, onlyWhere} of ARTIFACT_LOCATION_COLUMNS) {
        const columns = (db.prepare(`PRAGMA table_info("${table}")`).all() as Array<{name: string}>).map((c) => c.name)
        if (!columns.includes(column) || (onlyWhere && !columns.includes(onlyWhere.column))) continue
        const where = onlyWhere ? ` WHERE "${onlyWhere.column}" = ?` : ''
        const update = db.prepare(`UPDATE "${table}" SET "${column}" = ? WHERE rowid = ?`)
        const rows = db
          .prepare(`SELECT rowid, "${column}" FROM "${table}"${where}`)
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
