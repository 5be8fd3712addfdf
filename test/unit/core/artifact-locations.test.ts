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
  const {encodeCopyLine, decodeCopyLine} = await import('../../../src/core/backup/pg-text.js')
  it('round-trips through the COPY decoder: NULL, big integers, NaN and infinities, bytes, escapes', () => {
    const row = [null, 9007199254740993n, Number.NaN, -Infinity, 0.1, Buffer.from([0, 10, 255]), 'a\\b\tc\nd\re']
    const line = encodeCopyLine(row)
    assert.ok(!line.includes('\n') && line.split('\t').length === row.length, line)
    assert.deepEqual(decodeCopyLine(line, ['text', 'integer', 'float', 'float', 'float', 'bytea', 'text']), [
      null,
      {$i: '9007199254740993'},
      {$f: 'NaN'},
      {$f: '-Infinity'},
      0.1,
      {$b: Buffer.from([0, 10, 255]).toString('base64')},
      'a\\b\tc\nd\re',
    ])
  })
})
