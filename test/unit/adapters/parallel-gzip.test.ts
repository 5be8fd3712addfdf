import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {describe, it} from 'node:test'
import {createGunzip, gunzipSync} from 'node:zlib'

import {parallelGzip} from '../../../src/adapters/fs/parallel-gzip.js'

async function compress(input: Buffer, options = {}) {
  const gzip = parallelGzip({chunkBytes: 64 * 1024, parallel: 3, ...options})
  const out: Buffer[] = []
  await pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < input.length; i += 10_000) yield input.subarray(i, i + 10_000)
      })(),
    ),
    gzip,
    new Writable({write: (chunk: Buffer, _encoding, done) => (out.push(chunk), done())}),
  )
  return {gz: Buffer.concat(out), stats: gzip.stats}
}

describe('parallelGzip', () => {
  it('writes members that gunzip reads back as the same bytes, in order', async () => {
    const text = Buffer.from(Array.from({length: 40_000}, (_, i) => `step ${i} loss ${1 / (i + 1)}\n`).join(''))
    const {gz, stats} = await compress(text)
    assert.ok(stats.compressed > 3, 'several members')
    assert.ok(gz.length < text.length / 3, 'text compresses')
    assert.deepEqual(gunzipSync(gz), text)
    const streamed: Buffer[] = []
    await pipeline(
      Readable.from([gz]),
      createGunzip(),
      new Writable({write: (chunk: Buffer, _encoding, done) => (streamed.push(chunk), done())}),
    )
    assert.deepEqual(Buffer.concat(streamed), text, 'the streaming gunzip restore uses reads every member')
  })

  it('stores chunks that do not shrink, and an empty input is still a gzip file', async () => {
    const noise = randomBytes(300_000)
    const {gz, stats} = await compress(noise)
    assert.ok(stats.stored >= 4 && stats.compressed === 0, JSON.stringify(stats))
    assert.ok(gz.length < noise.length * 1.01)
    assert.deepEqual(gunzipSync(gz), noise)
    assert.equal(gunzipSync((await compress(Buffer.alloc(0))).gz).length, 0)
  })
})
