// The PostgreSQL side of a backup: one REPEATABLE READ READ ONLY transaction (every table from the same
// snapshot, while MLflow keeps writing), MLflow's tables only, each streamed out with COPY … TO STDOUT and kept as
// COPY text (format 2; format 1's JSON lines are no longer written, only read).
import {createWriteStream} from 'node:fs'
import {join} from 'node:path'
import {Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import type pg from 'pg'
import {to as copyTo} from 'pg-copy-streams'

import type {TableSchema} from '../../core/backup/format.js'
import {foreignKeyOrder, selectMlflowTables} from '../../core/backup/tables.js'
import type {DatabaseTarget} from '../../core/database-url.js'
import {withPostgres} from '../db/postgres.js'
import {writeSchemaFile, type TableExport} from './table-files.js'
import {quoteIdentifier as quote} from '../../core/backup/tables.js'

async function catalog(client: pg.Client): Promise<{
  tables: string[]
  references: Record<string, string[]>
  columns: Record<string, Array<{name: string; type: string}>>
}> {
  const tables = (
    await client.query<{name: string}>(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
  ).rows.map((row) => row.name)
  const references: Record<string, string[]> = {}
  const fks = await client.query<{child: string; parent: string}>(
    "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = current_schema()",
  )
  const bare = (name: string) => name.replace(/^.*\./, '').replace(/^"|"$/g, '')
  for (const {child, parent} of fks.rows) (references[bare(child)] ??= []).push(bare(parent))
  const columns: Record<string, Array<{name: string; type: string}>> = {}
  // Generated columns (spans.duration_ns) are the database's to compute: COPY leaves them out, so do we.
  const rows = await client.query<{table_name: string; column_name: string; data_type: string}>(
    "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND is_generated = 'NEVER' ORDER BY table_name, ordinal_position",
  )
  for (const row of rows.rows) (columns[row.table_name] ??= []).push({name: row.column_name, type: row.data_type})
  return {tables, references, columns}
}

/**
 * Format 2: the table's COPY text stream written as it comes (no per-row work); returns its rows (lines: the text
 * format ends every row with a newline and escapes those inside values).
 */
async function copyTableRaw(
  client: pg.Client,
  table: string,
  columns: Array<{name: string; type: string}>,
  file: string,
): Promise<number> {
  const stream = client.query(
    copyTo(`COPY ${quote(table)} (${columns.map((column) => quote(column.name)).join(', ')}) TO STDOUT`),
  )
  let rows = 0
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) rows++
      done(null, chunk)
    },
  })
  // A failed write (a full disk) destroys the pipeline, COPY included: the connection is not left waiting on it.
  await pipeline(stream, counter, createWriteStream(file, {mode: 0o600}))
  return rows
}

/**
 * Every MLflow table of one snapshot, as COPY text files (`db/<table>.copy`, format 2): the tables MLflow makes at
 * the database's revision (`tablesAt`), or, for a revision it does not know, the known ones and those that
 * reference them.
 */
export async function exportPostgresTables(
  target: DatabaseTarget,
  outDir: string,
  tablesAt: (revision: string) => Promise<Set<string> | undefined> = async () => undefined,
): Promise<TableExport> {
  return withPostgres(target, async (client) => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    try {
      // Pinned output formats: hex bytea, shortest exact floats (PostgreSQL 11 and older print 15 digits
      // unless asked), ISO dates.
      await client.query(
        "SET LOCAL bytea_output = 'hex'; SET LOCAL extra_float_digits = 3; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'iso_8601'",
      )
      const {tables, references, columns} = await catalog(client)
      const revision = tables.includes('alembic_version')
        ? ((await client.query<{version_num: string}>('SELECT version_num FROM alembic_version')).rows[0]
            ?.version_num ?? null)
        : null
      const mlflows = revision ? await tablesAt(revision) : undefined
      const {taken, skipped} = mlflows
        ? {taken: tables.filter((t) => mlflows.has(t)), skipped: tables.filter((t) => !mlflows.has(t))}
        : selectMlflowTables(tables, references)
      const schema: TableSchema[] = []
      const rowCounts: Record<string, number> = {}
      const files: Array<{name: string; file: string}> = []
      for (const table of foreignKeyOrder(taken, references)) {
        schema.push({name: table, columns: columns[table] ?? []})
        const file = join(outDir, `${table}.copy`)
        rowCounts[table] = await copyTableRaw(client, table, columns[table] ?? [], file)
        files.push({name: `db/${table}.copy`, file})
      }
      return {
        schema,
        rowCounts,
        alembicRevision: revision,
        files: [writeSchemaFile(outDir, 'postgresql', schema), ...files],
        skipped,
      }
    } finally {
      await client.query('ROLLBACK').catch(() => undefined)
    }
  })
}
