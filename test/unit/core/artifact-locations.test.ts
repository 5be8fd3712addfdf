import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {locationRewriter, sameRoot} from '../../../src/core/backup/artifact-locations.js'

describe('locationRewriter', () => {
  it('moves a local root in each spelling, keeping the spelling, and leaves everything else alone', () => {
    const rewrite = locationRewriter('/srv/old/artifacts', '/srv/new/store')
    assert.equal(rewrite('/srv/old/artifacts/1/abc/artifacts'), '/srv/new/store/1/abc/artifacts')
    assert.equal(rewrite('file:///srv/old/artifacts/1/abc/artifacts'), 'file:///srv/new/store/1/abc/artifacts')
    assert.equal(rewrite('file:/srv/old/artifacts/1'), 'file:/srv/new/store/1')
    assert.equal(rewrite('/srv/old/artifacts'), '/srv/new/store')
    assert.equal(rewrite('/srv/old/artifacts-other/1'), undefined, 'a sibling with the same prefix is not under it')
    assert.equal(rewrite('mlflow-artifacts:/1/abc/artifacts'), undefined, 'proxied URIs need no rewrite')
    assert.equal(rewrite('runs:/abc/model'), undefined)
  })

  it('moves an object-store root to a local directory and back', () => {
    assert.equal(
      locationRewriter('s3://bucket/mlflow/', '/restore/art')('s3://bucket/mlflow/2/r/artifacts'),
      '/restore/art/2/r/artifacts',
    )
    assert.equal(locationRewriter('s3://bucket/mlflow', '/restore/art')('s3://bucket/mlflow2/x'), undefined)
    assert.equal(locationRewriter('/old', 'gs://b/p')('file:///old/3/x'), 'gs://b/p/3/x')
    assert.equal(locationRewriter('file:///old/a', '/new/b')('/old/a/1'), '/new/b/1', 'a file: root matches paths too')
  })

  it('knows when the root did not move', () => {
    assert.ok(sameRoot('/srv/a/', 'file:///srv/a'))
    assert.ok(!sameRoot('/srv/a', '/srv/b'))
  })
})

describe('format 2 row counts', async () => {
  const {compareRowCounts, holdsCopyText, holdsSqliteFile} = await import('../../../src/core/backup/format.js')
  it('counts COPY text lines like JSON lines, and tells the two format 2 layouts apart', () => {
    const manifest = {rowCounts: {runs: 2, metrics: 5}, files: [{path: 'db/runs.copy'}, {path: 'db/metrics.copy'}]}
    const problems = compareRowCounts(
      manifest as never,
      new Map([
        ['db/runs.copy', 2],
        ['db/metrics.copy', 4],
      ]),
    )
    assert.deepEqual(problems, [{kind: 'rows', path: 'db/metrics.copy', expected: 5, actual: 4}])
    assert.ok(holdsCopyText(manifest as never) && !holdsSqliteFile(manifest as never))
    assert.ok(holdsSqliteFile({files: [{path: 'db/mlflow.db'}]} as never))
  })
})

describe('COPY text from SQLite values', async () => {
  const {encodeCopyLine, sqliteCopyLineSql, sqliteValueOfCopyField} =
    await import('../../../src/core/backup/pg-text.js')
  const {default: Database} = await import('better-sqlite3')
  const kinds = ['text', 'integer', 'float', 'float', 'float', 'bytea', 'text'] as const
  const decode = (line: string) => line.split('\t').map((field, index) => sqliteValueOfCopyField(field, kinds[index]))
  const row = [null, 9007199254740993n, Number.NaN, -Infinity, 0.1, Buffer.from([0, 10, 255]), 'a\\b\tc\nd\re']
  it('round-trips through the COPY decoder: NULL, big integers, NaN and infinities, bytes, escapes', () => {
    const line = encodeCopyLine(row)
    assert.ok(!line.includes('\n') && line.split('\t').length === row.length, line)
    assert.deepEqual(decode(line), row)
  })
  it('SQLite renders the same values the same way (sqliteCopyLineSql), and every double exactly', () => {
    const db = new Database(':memory:')
    db.defaultSafeIntegers(true)
    db.exec('CREATE TABLE t (a TEXT, b INTEGER, c REAL, d REAL, e REAL, f BLOB, g TEXT)')
    // SQLite stores NaN as NULL, as MLflow's own SQLite store would see it.
    db.prepare('INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)').run(...row)
    const sql = sqliteCopyLineSql(['a', 'b', 'c', 'd', 'e', 'f', 'g'])
    const line = db.prepare(`SELECT ${sql} FROM t`).pluck().get() as string
    assert.ok(line.endsWith('\n'))
    assert.deepEqual(decode(line.slice(0, -1)), [null, 9007199254740993n, null, -Infinity, 0.1, row[5], row[6]])
    // 20,000 random bit patterns and the edge cases: '%!.17g' must give back the very same double.
    db.exec('CREATE TABLE f (x REAL)')
    const insert = db.prepare('INSERT INTO f VALUES (?)')
    const bits = Buffer.alloc(8)
    const doubles = [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1 / 3, 0.30000000000000004, 1e21, 1e-7]
    for (let i = 0; i < 20_000; i++) {
      for (let j = 0; j < 8; j++) bits[j] = Math.floor(Math.random() * 256)
      const value = bits.readDoubleLE(0)
      if (Number.isFinite(value)) doubles.push(value)
    }
    for (const value of doubles) insert.run(value)
    const rendered = db
      .prepare(`SELECT ${sqliteCopyLineSql(['x'])} FROM f ORDER BY rowid`)
      .pluck()
      .all() as string[]
    const wrong = rendered.map((text, index) => [doubles[index], Number(text.slice(0, -1))]).filter(([a, b]) => a !== b)
    assert.deepEqual(wrong.slice(0, 3), [], `${wrong.length} doubles changed`)
    db.close()
  })
})
