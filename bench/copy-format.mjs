#!/usr/bin/env node
// COPY text against COPY binary for format 2's PostgreSQL tables ("text or binary; measure both"):
// export time, size raw and gzipped (level 1, as the archive's parallel gzip uses for its probe; level 6 too), and
// load time into an empty copy of the table without indexes. Not a test: it never fails a build.
//
//   node bench/copy-format.mjs postgresql://user:pass@127.0.0.1:5432/db [table=metrics]
// The database must hold the table (the PostgreSQL source that bench/backup.mjs builds, kept with BENCH_KEEP=1).
import {createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {gzipSync} from 'node:zlib'

import pg from 'pg'
import {from as copyFrom, to as copyTo} from 'pg-copy-streams'

const [url, table = 'metrics'] = process.argv.slice(2)
if (!url) throw new Error('usage: node bench/copy-format.mjs POSTGRES_URL [table]')
const work = mkdtempSync(join(tmpdir(), 'mlflowctl-bench-copy-'))
const client = new pg.Client(url)
await client.connect()
const seconds = async (fn) => {
  const started = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - started) / 1e9
}
/** Gzipped size of the file in 16 MiB pieces (memory stays bounded), at `level`. */
function gzippedSize(file, level) {
  const data = readFileSync(file)
  let size = 0
  for (let at = 0; at < data.length; at += 16 << 20)
    size += gzipSync(data.subarray(at, at + (16 << 20)), {level}).length
  return size
}
const results = []
try {
  const {rows} = await client.query(`SELECT count(*)::bigint AS n FROM "${table}"`)
  for (const format of ['text', 'binary']) {
    const file = join(work, `${table}.${format}`)
    const options = format === 'binary' ? ' (FORMAT binary)' : ''
    const exportSeconds = await seconds(() =>
      pipeline(client.query(copyTo(`COPY "${table}" TO STDOUT${options}`)), createWriteStream(file)),
    )
    await client.query(`DROP TABLE IF EXISTS bench_copy_target; CREATE TABLE bench_copy_target (LIKE "${table}")`)
    const loadSeconds = await seconds(() =>
      pipeline(createReadStream(file), client.query(copyFrom(`COPY bench_copy_target FROM STDIN${options}`))),
    )
    results.push({
      format,
      rows: Number(rows[0].n),
      exportSeconds,
      loadSeconds,
      bytes: statSync(file).size,
      gzip1Bytes: gzippedSize(file, 1),
      gzip6Bytes: gzippedSize(file, 6),
    })
    rmSync(file)
  }
} finally {
  await client.query('DROP TABLE IF EXISTS bench_copy_target').catch(() => undefined)
  await client.end()
  rmSync(work, {recursive: true, force: true})
}
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`
console.log(
  `| COPY format (${table}, ${results[0].rows} rows) | export | load (no indexes) | size | gzip -1 | gzip -6 |`,
)
console.log('| --- | --- | --- | --- | --- | --- |')
for (const r of results)
  console.log(
    `| ${r.format} | ${r.exportSeconds.toFixed(1)} s | ${r.loadSeconds.toFixed(1)} s | ${mib(r.bytes)} | ${mib(r.gzip1Bytes)} | ${mib(r.gzip6Bytes)} |`,
  )
