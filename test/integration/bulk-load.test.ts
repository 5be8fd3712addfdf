// The bulk paths of a restore against real PostgreSQL and SQLite, value by value: SQLite → PostgreSQL
// (SQLite renders COPY text), COPY text → PostgreSQL (split between two connections; a target without one of the
// source's columns), COPY text → SQLite (typed decoding). Every value must come back exactly: big integers, every
// double, ±Infinity, bytes, NULL, text with tabs, newlines and backslashes; generated columns are left to the
// database.
// test-pool: background (no deadline here that a slow, busy machine could miss)
import assert from 'node:assert/strict'
import {createWriteStream, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'
import pg from 'pg'
import {to as copyTo} from 'pg-copy-streams'

import {
  copyFilesIntoPostgres,
  copyFilesIntoSqlite,
  lineAlignedRanges,
  sqliteIntoPostgres,
} from '../../src/adapters/backup/bulk-load.js'
import {tempDir} from '../support/cli.js'
import {NO_PG, createPgDatabase, pgBaseUrl, requireService} from '../support/services.js'

const SQLITE_TABLE = `CREATE TABLE t (id INTEGER PRIMARY KEY, big INTEGER, f REAL, b BLOB, s TEXT, flag BOOLEAN,
  doubled INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL); CREATE INDEX t_s ON t (s, flag)`
const PG_TABLE = (schema: string, withFlag = true) =>
  `CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.t (id bigint, big bigint, f double precision, b bytea, s text${
    withFlag ? ', flag boolean' : ''
  }, doubled bigint GENERATED ALWAYS AS (id * 2) STORED); CREATE TABLE ${schema}.alembic_version (version_num text)`

type Row = [bigint, bigint | null, number | null, Buffer | null, string | null, bigint | null]

/** The special values first, then random ones (every double drawn from random bit patterns). */
function rows(count: number): Row[] {
  const special: Row[] = [
    [1n, 9223372036854775807n, Infinity, Buffer.from([0, 9, 10, 92, 255]), 'tab\there\nnewline\\back\rcr', 1n],
    [2n, -9223372036854775808n, -Infinity, Buffer.alloc(0), '', 0n],
    [3n, null, null, null, null, null],
    [4n, 9007199254740993n, 5e-324, null, '\\N is not NULL here', 1n],
    [5n, 0n, 0.1, Buffer.from('x'), 'ünïcödé ✓', 0n],
  ]
  const bits = Buffer.alloc(8)
  for (let id = 6; id <= count; id++) {
    let value = Number.NaN
    while (!Number.isFinite(value)) {
      for (let j = 0; j < 8; j++) bits[j] = Math.floor(Math.random() * 256)
      value = bits.readDoubleLE(0)
    }
    special.push([BigInt(id), BigInt(id) * 1_000_003n, value, null, `run-${id}`, BigInt(id % 2)])
  }
  return special
}

function sqliteSource(file: string, data: Row[]): void {
  const db = new Database(file)
  db.exec(`${SQLITE_TABLE}; CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ('r1')`)
  const insert = db.prepare('INSERT INTO t (id, big, f, b, s, flag) VALUES (?, ?, ?, ?, ?, ?)')
  db.transaction(() => data.forEach((row) => insert.run(...row)))()
  db.close()
}

function sqliteRows(file: string): unknown[][] {
  const db = new Database(file, {readonly: true})
  db.defaultSafeIntegers(true)
  const result = db.prepare('SELECT id, big, f, b, s, flag, doubled FROM t ORDER BY id').raw(true).all() as unknown[][]
  db.close()
  return result
}

describe('bulk loads between SQLite and PostgreSQL', () => {
  it('SQLite → PostgreSQL → COPY text → PostgreSQL (split, projected) and → SQLite: every value exact', async (t) => {
    if (!requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const work = tempDir('bulk-load-')
    const data = rows(5000)
    const source = join(work, 'source.db')
    sqliteSource(source, data)
    const url = await createPgDatabase('mlflowctl_bulk_load')
    const client = new pg.Client({connectionString: url})
    await client.connect()
    try {
      await client.query(PG_TABLE('stage'))
      assert.deepEqual(await sqliteIntoPostgres(url, 'stage', source), {tables: 1, rows: data.length})
      const {rows: loaded} = await client.query<{
        id: string
        big: string | null
        f: string | null
        b: string | null
        s: string | null
        flag: boolean | null
        doubled: string
      }>(
        `SELECT id::text, big::text, f::text, encode(b, 'hex') AS b, s, flag, doubled::text FROM stage.t ORDER BY stage.t.id`,
      )
      assert.equal(loaded.length, data.length)
      for (const [index, row] of loaded.entries()) {
        const [id, big, f, b, s, flag] = data[index]
        assert.equal(row.id, String(id))
        assert.equal(row.big, big === null ? null : String(big), `big of ${id}`)
        assert.ok(f === null ? row.f === null : Number(row.f) === f, `f of ${id}: ${row.f} ≠ ${f}`)
        assert.equal(row.b, b === null ? null : b.toString('hex'), `b of ${id}`)
        assert.equal(row.s, s, `s of ${id}`)
        assert.equal(row.flag, flag === null ? null : flag === 1n, `flag of ${id}`)
        assert.equal(row.doubled, String(id * 2n), 'generated by the database')
      }

      // The table as a PostgreSQL backup holds it: COPY text and schema.json (types from information_schema).
      const dbDir = join(work, 'db')
      mkdirSync(dbDir)
      await client.query("SET extra_float_digits = 3; SET bytea_output = 'hex'")
      await pipeline(
        client.query(copyTo('COPY stage.t (id, big, f, b, s, flag) TO STDOUT')),
        createWriteStream(join(dbDir, 't.copy')),
      )
      writeFileSync(join(dbDir, 'alembic_version.copy'), 'r1\n')
      const columns = ['bigint', 'bigint', 'double precision', 'bytea', 'text', 'boolean']
      writeFileSync(
        join(dbDir, 'schema.json'),
        JSON.stringify({
          engine: 'postgresql',
          tables: [
            {name: 'alembic_version', columns: [{name: 'version_num', type: 'text'}]},
            {
              name: 't',
              columns: ['id', 'big', 'f', 'b', 's', 'flag'].map((name, i) => ({name, type: columns[i]})),
            },
          ],
        }),
      )

      // Split between the two connections (at 1 KiB instead of 32 MiB), into a target without the flag column.
      const ranges = await lineAlignedRanges(join(dbDir, 't.copy'), 2, 1024)
      const text = readFileSync(join(dbDir, 't.copy'))
      assert.equal(ranges.length, 2)
      assert.equal(ranges[0].start, 0)
      assert.equal(ranges[1].start, ranges[0].end + 1)
      assert.equal(ranges[1].end, text.length - 1)
      for (const range of ranges) assert.equal(text[range.end], 10, 'each piece ends at a line end')
      await client.query(PG_TABLE('stage2', false))
      assert.deepEqual(await copyFilesIntoPostgres(url, 'stage2', dbDir, 1024), {tables: 1, rows: data.length})
      const same = await client.query<{differ: string}>(
        'SELECT count(*)::text AS differ FROM (SELECT id, big, f, b, s FROM stage.t EXCEPT ALL SELECT id, big, f, b, s FROM stage2.t) d',
      )
      assert.equal(same.rows[0].differ, '0', 'the split, projected load holds the very same rows')

      // And back into SQLite: the same values as the source, decoded by column type.
      const back = join(work, 'back.db')
      const db = new Database(back)
      db.exec(SQLITE_TABLE)
      db.close()
      assert.deepEqual(await copyFilesIntoSqlite(back, dbDir), {tables: 1, rows: data.length})
      assert.deepEqual(sqliteRows(back), sqliteRows(source))
      // Its index was dropped for the load and built again from the same SQL.
      const check = new Database(back, {readonly: true})
      assert.deepEqual(check.prepare("SELECT sql FROM sqlite_master WHERE name = 't_s'").pluck().all(), [
        'CREATE INDEX t_s ON t (s, flag)',
      ])
      assert.equal(check.pragma('integrity_check', {simple: true}), 'ok')
      check.close()
      // A line with a field too few is refused with the table's name, not loaded in part.
      writeFileSync(join(dbDir, 't.copy'), `${readFileSync(join(dbDir, 't.copy'), 'utf8')}99\t1\n`)
      const broken = join(work, 'broken.db')
      const empty = new Database(broken)
      empty.exec(SQLITE_TABLE)
      empty.close()
      await assert.rejects(copyFilesIntoSqlite(broken, dbDir), /A row of t has 2 fields, expected 6/)
      assert.equal(sqliteRows(broken).length, 0, 'the table stays empty')
    } finally {
      await client.end()
    }
  })
})
