// The db/ part of an archive as files in scratch space: schema.json and one file per table, format 1's typed JSON
// lines or format 2's COPY text (PostgreSQL sources). Shared by every engine.
import {closeSync, openSync, writeSync} from 'node:fs'
import {join} from 'node:path'

import type {TableSchema} from '../../core/backup/format.js'
import {unescapeCopyField} from '../../core/backup/pg-text.js'
import {pathKind} from '../fs/safe-fs.js'

export interface TableExport {
  schema: TableSchema[]
  rowCounts: Record<string, number>
  alembicRevision: string | null
  /** db/<table>.copy files, in order, plus db/schema.json */
  files: Array<{name: string; file: string}>
  /** Tables in the source that are not MLflow's and were left out. */
  skipped?: string[]
}

export function writeSchemaFile(outDir: string, engine: string, schema: TableSchema[]): {name: string; file: string} {
  const file = join(outDir, 'schema.json')
  const fd = openSync(file, 'w', 0o600)
  try {
    writeSync(fd, `${JSON.stringify({engine, tables: schema}, null, 2)}\n`)
  } finally {
    closeSync(fd)
  }
  return {name: 'db/schema.json', file}
}

/** How a table's rows were written: format 1's JSON lines, or format 2's COPY text (PostgreSQL sources). */
export type TableEncoding = 'jsonl' | 'copy'

/** The file that holds a table's rows in `dbDir`, and its encoding; undefined when there is none. Reads only. */
export async function tableFileOf(
  dbDir: string,
  table: string,
): Promise<{file: string; encoding: TableEncoding} | undefined> {
  for (const encoding of ['copy', 'jsonl'] as const) {
    const file = join(dbDir, `${table}.${encoding}`)
    if ((await pathKind(file)) === 'file') return {file, encoding}
  }
  return undefined
}

/** One line of a table file as its fields: JSON values, or COPY text fields unescaped (strings, NULL as null). Pure. */
export function parseTableLine(line: string, encoding: TableEncoding): unknown[] {
  return encoding === 'copy'
    ? line.split('\t').map((field) => (field === '\\N' ? null : unescapeCopyField(field)))
    : (JSON.parse(line) as unknown[])
}
