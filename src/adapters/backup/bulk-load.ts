// Rows into the tables real MLflow created for a restore, in bulk and without per-row JSON (format 2):
//   COPY text files  → PostgreSQL: streamed to COPY FROM STDIN as they are, on two connections (large files split at
//                      a line boundary, so both cores parse rows: pg_restore without -j uses one)
//   SQLite file      → PostgreSQL: better-sqlite3 rows written as COPY text straight into COPY FROM STDIN
//   COPY text files  → SQLite: each line decoded by column type and inserted through one prepared statement
// Keys and indexes are off while this runs (restore_db.py builds them afterwards on PostgreSQL), so the order of the
// tables does not matter.
import {createReadStream} from 'node:fs'
import {open, readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import Database from 'better-sqlite3'
import type pg from 'pg'
import {from as copyFrom} from 'pg-copy-streams'

import type {TableSchema} from '../../core/backup/format.js'
import {pgKind, sqliteCopyLineSql, sqliteValueOfCopyField, type PgKind} from '../../core/backup/pg-text.js'
import {parseDatabaseUrl} from '../../core/database-url.js'
import {withPostgres} from '../db/postgres.js'
import {tableNames} from './sqlite-source.js'
import {quoteIdentifier as quote} from '../../core/backup/tables.js'

/** Connections that load at once: one per core of the machine this was measured on (2); more only add contention. */
const COPY_CONNECTIONS = 2
/** Files above this are split between the connections. */
const SPLIT_ABOVE = 32 * 1024 * 1024
const CHUNK = 1 << 20
/**
 * SQLite's page cache while a restore loads a scratch database: 256 MiB, a bound whatever the data (the peak RSS of
 * the bench's 3M-row restore was 635 MiB with it, 230 MiB without; 128 MiB saved 200 MiB and cost 5 s).
 */
const SQLITE_CACHE_KIB = 256 * 1024

export interface Loaded {
  tables: number
  rows: number
}

/** The columns a restore writes: the source's, in its order, that the target has and does not generate. */
export function insertableColumns(source: string[], target: Set<string>): string[] {
  return source.filter((column) => target.has(column))
}

async function stagingColumns(client: pg.Client, schema: string): Promise<Map<string, Set<string>>> {
  const {rows} = await client.query<{table_name: string; column_name: string}>(
    "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1 AND is_generated = 'NEVER'",
    [schema],
  )
  const columns = new Map<string, Set<string>>()
  for (const row of rows) {
    if (!columns.has(row.table_name)) columns.set(row.table_name, new Set())
    columns.get(row.table_name)!.add(row.column_name)
  }
  return columns
}

/** Byte ranges (inclusive) of a file that end at line ends: `parts` pieces of about equal size when it is large. */
export async function lineAlignedRanges(
  file: string,
  parts: number,
  splitAbove = SPLIT_ABOVE,
): Promise<Array<{start: number; end: number}>> {
  const size = (await stat(file)).size
  if (parts < 2 || size <= splitAbove) return [{start: 0, end: size - 1}]
  const handle = await open(file, 'r')
  try {
    const cuts = [0]
    const probe = Buffer.alloc(64 * 1024)
    for (let part = 1; part < parts; part++) {
      let at = Math.floor((size * part) / parts)
      for (;;) {
        const {bytesRead} = await handle.read(probe, 0, probe.length, at)
        if (bytesRead === 0) break
        const newline = probe.subarray(0, bytesRead).indexOf(10)
        if (newline !== -1) {
          at += newline + 1
          break
        }
        at += bytesRead
      }
      if (at > cuts.at(-1)! && at < size) cuts.push(at)
    }
    cuts.push(size)
    return cuts.slice(0, -1).map((start, index) => ({start, end: cuts[index + 1] - 1}))
  } finally {
    await handle.close()
  }
}

/**
 * Keeps the fields at `positions` of each COPY text line (a target without one of the source's columns), from a
 * stream decoded as UTF-8 (so that no character is split between chunks); counts the lines.
 */
function projectLines(positions: number[]): {transform: Transform; lines(): number} {
  let rest = ''
  let count = 0
  const project = (line: string) => {
    count++
    const fields = line.split('\t') // escaped tabs are "\t" in COPY text: a raw tab always separates fields
    return `${positions.map((position) => fields[position]).join('\t')}\n`
  }
  const transform = new Transform({
    decodeStrings: false,
    transform(chunk: string, _encoding, done) {
      const lines = (rest + chunk).split('\n')
      rest = lines.pop()!
      done(null, lines.map(project).join(''))
    },
    flush(done) {
      done(null, rest ? project(rest) : '')
    },
  })
  return {transform, lines: () => count}
}

/** COPY FROM STDIN into `table` of the client's search path: the writable end of the table's rows. */
const copyInto = (client: pg.Client, table: string, columns: string[]) =>
  client.query(copyFrom(`COPY ${quote(table)} (${columns.map(quote).join(', ')}) FROM STDIN`))

/** Runs jobs on `connections` clients at once, largest first; each client sets the search path to `schema`. */
async function onConnections<T extends {size: number}>(
  url: string,
  schema: string,
  jobs: T[],
  run: (client: pg.Client, job: T) => Promise<number>,
  connections = COPY_CONNECTIONS,
): Promise<number> {
  const queue = [...jobs].sort((a, b) => b.size - a.size)
  let rows = 0
  const worker = () =>
    withPostgres(parseDatabaseUrl(url), async (client) => {
      await client.query(`SET search_path TO ${quote(schema)}`)
      for (let job = queue.shift(); job; job = queue.shift()) {
        const loaded = await run(client, job) // not `rows += await …`: that would read rows before the wait
        rows += loaded
      }
    })
  await Promise.all(Array.from({length: Math.min(connections, queue.length)}, worker))
  return rows
}

/** Format 2 of a PostgreSQL source into PostgreSQL: each `<table>.copy` in `dbDir` streamed to COPY FROM STDIN. */
export async function copyFilesIntoPostgres(
  url: string,
  schema: string,
  dbDir: string,
  splitAbove = SPLIT_ABOVE,
): Promise<Loaded> {
  const tables = (JSON.parse(await readFile(join(dbDir, 'schema.json'), 'utf8')) as {tables: TableSchema[]}).tables
  const target = await withPostgres(parseDatabaseUrl(url), (client) => stagingColumns(client, schema))
  const jobs: Array<{
    table: string
    file: string
    columns: string[]
    positions?: number[]
    start: number
    end: number
    size: number
  }> = []
  let count = 0
  for (const table of tables) {
    if (table.name === 'alembic_version') continue // set by the migrations to the backup's revision
    const source = table.columns.map((column) => column.name)
    const targetColumns = target.get(table.name)
    if (!targetColumns) throw new Error(`Table ${table.name} from the backup does not exist in the target schema.`)
    const columns = insertableColumns(source, targetColumns)
    const positions = columns.length === source.length ? undefined : columns.map((column) => source.indexOf(column))
    const file = join(dbDir, `${table.name}.copy`)
    for (const range of await lineAlignedRanges(file, COPY_CONNECTIONS, splitAbove))
      jobs.push({table: table.name, file, columns, positions, ...range, size: range.end - range.start + 1})
    count++
  }
  const rows = await onConnections(url, schema, jobs, async (client, job) => {
    if (job.size <= 0) return 0
    const copy = client.query(copyFrom(`COPY ${quote(job.table)} (${job.columns.map(quote).join(', ')}) FROM STDIN`))
    const range = {start: job.start, end: job.end, highWaterMark: CHUNK}
    if (job.positions) {
      const projection = projectLines(job.positions)
      await pipeline(createReadStream(job.file, {...range, encoding: 'utf8'}), projection.transform, copy)
      return projection.lines()
    }
    let lines = 0
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
        done(null, chunk)
      },
    })
    await pipeline(createReadStream(job.file, range), counter, copy)
    return lines
  })
  return {tables: count, rows}
}

/** Rows per batch SQLite renders as COPY text in one call (about 1 MiB for MLflow's metrics). */
const SQLITE_BATCH = 10_000

/**
 * A table's rows as COPY text, SQLite rendering each batch in one call (sqliteCopyLineSql): keyset pages by rowid,
 * so memory stays at one batch whatever the table's size. Order does not matter (keys are built afterwards).
 */
function* sqliteCopyBatches(
  db: Database.Database,
  table: string,
  columns: string[],
): Generator<{text: string; rows: number}> {
  const page = db
    .prepare(
      `SELECT max(id) AS last, count(*) AS rows, group_concat(line, '') AS text FROM ` +
        `(SELECT rowid AS id, ${sqliteCopyLineSql(columns)} AS line FROM ${quote(table)} WHERE rowid > ? ORDER BY rowid LIMIT ${SQLITE_BATCH})`,
    )
    .safeIntegers(true)
  for (let after = -(2n ** 63n); ;) {
    const batch = page.get(after) as {last: bigint | null; rows: bigint; text: string | null}
    if (batch.last === null || batch.text === null) return
    yield {text: batch.text, rows: Number(batch.rows)}
    after = batch.last
  }
}

/** Format 2 of a SQLite source into PostgreSQL: each table's rows as COPY text, straight into COPY FROM STDIN. */
export async function sqliteIntoPostgres(url: string, schema: string, file: string): Promise<Loaded> {
  const db = new Database(file, {readonly: true, fileMustExist: true})
  try {
    const target = await withPostgres(parseDatabaseUrl(url), (client) => stagingColumns(client, schema))
    const jobs: Array<{table: string; columns: string[]; size: number}> = []
    for (const table of tableNames(db)) {
      if (table === 'alembic_version') continue
      const targetColumns = target.get(table)
      if (!targetColumns) throw new Error(`Table ${table} from the backup does not exist in the target schema.`)
      // table_xinfo: generated columns (hidden 2 or 3) are the database's to compute.
      const source = (db.prepare(`PRAGMA table_xinfo(${quote(table)})`).all() as Array<{name: string; hidden: number}>)
        .filter((column) => column.hidden === 0)
        .map((column) => column.name)
      jobs.push({table, columns: insertableColumns(source, targetColumns), size: 0})
    }
    // One connection: SQLite renders the rows on this process's core while the server parses them on the other.
    const rows = await onConnections(
      url,
      schema,
      jobs,
      async (client, job) => {
        let count = 0
        function* text(): Generator<string> {
          for (const batch of sqliteCopyBatches(db, job.table, job.columns)) {
            count += batch.rows
            yield batch.text
          }
        }
        await pipeline(Readable.from(text()), copyInto(client, job.table, job.columns))
        return count
      },
      1,
    )
    return {tables: jobs.length, rows}
  } finally {
    db.close()
  }
}

/** Format 2 of a PostgreSQL source into SQLite: each `<table>.copy` decoded by column type and inserted. */
export async function copyFilesIntoSqlite(file: string, dbDir: string): Promise<Loaded> {
  const tables = (JSON.parse(await readFile(join(dbDir, 'schema.json'), 'utf8')) as {tables: TableSchema[]}).tables
  const db = new Database(file, {fileMustExist: true})
  let rows = 0
  let count = 0
  try {
    // A scratch file, checked after the load: no rollback journal, no fsync per transaction, and foreign keys
    // checked as MLflow's own SQLite loader would (not row by row while parents may still be loading).
    db.pragma('journal_mode = OFF')
    db.pragma('synchronous = OFF')
    db.pragma('foreign_keys = OFF')
    // Keys cannot be dropped in SQLite (a composite primary key is an automatic index): a page cache that holds them
    // spares most of the random page reads of inserting into them (35 s → 21 s for the bench's 3M metrics).
    db.pragma(`cache_size = -${SQLITE_CACHE_KIB}`)
    for (const table of tables) {
      if (table.name === 'alembic_version') continue
      const info = db.prepare(`PRAGMA table_xinfo(${quote(table.name)})`).all() as Array<{name: string; hidden: number}>
      if (info.length === 0) throw new Error(`Table ${table.name} from the backup does not exist in the target schema.`)
      const source = table.columns.map((column) => column.name)
      const columns = insertableColumns(source, new Set(info.filter((c) => c.hidden === 0).map((c) => c.name)))
      const positions = columns.map((column) => source.indexOf(column))
      const kinds: PgKind[] = positions.map((position) => pgKind(table.columns[position].type))
      const insert = db.prepare(
        `INSERT INTO ${quote(table.name)} (${columns.map(quote).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
      )
      // Explicit indexes are built once after the rows (sorted), from the very SQL MLflow created them with.
      const indexes = db
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL")
        .all(table.name) as Array<{name: string; sql: string}>
      db.exec('BEGIN')
      for (const index of indexes) db.exec(`DROP INDEX ${quote(index.name)}`)
      try {
        for await (const line of createInterface({
          input: createReadStream(join(dbDir, `${table.name}.copy`), {highWaterMark: CHUNK}),
          crlfDelay: Number.POSITIVE_INFINITY,
        })) {
          const fields = line.split('\t')
          if (fields.length !== source.length)
            throw new Error(`A row of ${table.name} has ${fields.length} fields, expected ${source.length}.`)
          insert.run(positions.map((position, index) => sqliteValueOfCopyField(fields[position], kinds[index])))
          rows++
        }
        for (const index of indexes) db.exec(index.sql)
        db.exec('COMMIT')
      } catch (error) {
        db.exec('ROLLBACK')
        throw error
      }
      count++
    }
    return {tables: count, rows}
  } finally {
    db.close()
  }
}
