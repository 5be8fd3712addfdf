// The snapshot repository's pure rules (what dedupes, what is unchanged, what prune removes or rewrites, which packs
// a subset check reads) and its blob codec (compression, sealing, IDs).
import assert from 'node:assert/strict'
import {createHash, randomBytes} from 'node:crypto'
import {describe, it} from 'node:test'

import {blobId, newKeys, seal, unseal, unlockKeys} from '../../../src/adapters/backup/blob-codec.js'
import {chunkStream, fastCdc} from '../../../src/core/backup/chunker.js'
import {
  choosePackSubset,
  invalidConfig,
  invalidTree,
  missingBlobs,
  parseSubset,
  planDataGc,
  unchangedInParent,
  type IndexPack,
} from '../../../src/core/backup/snapshots.js'
import {MlflowctlError} from '../../../src/errors.js'

const SMALL = {min: 2048, avg: 8192, max: 65536}
const hashes = async (data: Buffer, pieceSize: number) => {
  const pieces = async function* () {
    for (let at = 0; at < data.length; at += pieceSize) yield data.subarray(at, at + pieceSize)
  }
  const found: Array<{hash: string; size: number}> = []
  for await (const chunk of chunkStream(pieces(), SMALL))
    found.push({hash: createHash('sha256').update(chunk).digest('hex'), size: chunk.length})
  return found
}

/** A deterministic pseudo-random buffer (the test must not depend on luck). */
function seeded(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length)
  let state = seed
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    out[i] = state >>> 24
  }
  return out
}

describe('content-defined chunking', () => {
  it('cuts the same chunks however the stream is split, each within the size bounds', async () => {
    const data = seeded(2 * 1024 * 1024, 7)
    const whole = await hashes(data, data.length)
    assert.deepEqual(await hashes(data, 4096), whole)
    assert.deepEqual(await hashes(data, 100_003), whole)
    assert.equal(
      whole.reduce((sum, chunk) => sum + chunk.size, 0),
      data.length,
    )
    for (const chunk of whole.slice(0, -1))
      assert.ok(chunk.size >= SMALL.min && chunk.size <= SMALL.max, String(chunk.size))
    const average = data.length / whole.length
    assert.ok(average > SMALL.avg / 2 && average < SMALL.avg * 2, `average chunk ${average}`)
  })

  it('an insertion in the middle changes only the chunks around it (the rest dedupe)', async () => {
    const data = seeded(4 * 1024 * 1024, 11)
    const edited = Buffer.concat([data.subarray(0, 2_000_000), Buffer.from('inserted bytes'), data.subarray(2_000_000)])
    const before = new Set((await hashes(data, 1 << 20)).map((chunk) => chunk.hash))
    const after = await hashes(edited, 1 << 20)
    const changed = after.filter((chunk) => !before.has(chunk.hash))
    assert.ok(changed.length >= 1 && changed.length <= 3, `${changed.length} of ${after.length} chunks changed`)
    // A fixed-size split would have changed every chunk after the insertion.
  })

  it('a cut never lands before the minimum or after the maximum', () => {
    const cutter = fastCdc(SMALL)
    const zeros = Buffer.alloc(SMALL.max * 2)
    assert.equal(cutter.cut(zeros, 0, zeros.length), SMALL.max)
    assert.equal(cutter.cut(zeros, 0, SMALL.min - 1), SMALL.min - 1)
  })
})

describe('snapshot rules', () => {
  const id = (n: number) => String(n).padStart(64, '0')
  it('a file is referenced unread only with the same path, size and a version the source reported', () => {
    const parent = new Map([
      ['artifacts/a', {path: 'artifacts/a', size: 3, sha256: id(1), blobs: [id(2)], version: 'v1'}],
    ])
    assert.equal(unchangedInParent(parent, 'artifacts/a', 3, 'v1')?.sha256, id(1))
    assert.equal(unchangedInParent(parent, 'artifacts/a', 4, 'v1'), undefined)
    assert.equal(unchangedInParent(parent, 'artifacts/a', 3, 'v2'), undefined)
    assert.equal(unchangedInParent(parent, 'artifacts/a', 3, undefined), undefined)
    assert.equal(unchangedInParent(undefined, 'artifacts/a', 3, 'v1'), undefined)
  })

  it('prune: unneeded packs go, mostly-unneeded ones are rewritten, unindexed ones (a killed run) go', () => {
    const packs: IndexPack[] = [
      {
        id: 'a',
        size: 300,
        blobs: [
          [id(1), 0, 100, 200],
          [id(2), 100, 200, 400],
        ],
      },
      {id: 'b', size: 100, blobs: [[id(3), 0, 100, 100]]},
      {
        id: 'c',
        size: 400,
        blobs: [
          [id(4), 0, 100, 100],
          [id(5), 100, 300, 300],
        ],
      },
      {id: 'gone', size: 50, blobs: [[id(6), 0, 50, 50]]},
      // A blob listed twice (a killed prune's repack): the first listing that exists serves it.
      {id: 'd', size: 100, blobs: [[id(1), 0, 100, 200]]},
    ]
    const stored = new Map([
      ['a', 300],
      ['b', 100],
      ['c', 400],
      ['d', 100],
      ['stray', 999],
    ])
    const plan = planDataGc(packs, new Set([id(1), id(2), id(4), id(6)]), stored)
    assert.deepEqual(plan.remove.sort(), ['b', 'd'])
    assert.deepEqual(
      plan.repack.map((use) => [use.id, use.blobs.map((blob) => blob[0])]),
      [['c', [id(4)]]],
    )
    assert.deepEqual(plan.unindexed, ['stray'])
    assert.equal(plan.keptBytes, 300)
    assert.equal(plan.freedBytes, 100 + 100 + 400 + 999)
    assert.deepEqual(missingBlobs([{path: 'x', size: 1, sha256: id(0), blobs: [id(1), id(9)]}], new Set([id(1)])), [
      id(9),
    ])
  })

  it('a subset check reads about N% of the packs, at least one; percentages are checked', () => {
    const packs = Array.from({length: 40}, (_, i) => `p${i}`)
    let state = 1
    const random = () => (state = (state * 16807) % 2147483647) / 2147483647
    const chosen = choosePackSubset(packs, 10, random)
    assert.equal(chosen.length, 4)
    assert.ok(chosen.every((pack) => packs.includes(pack)))
    assert.equal(choosePackSubset(packs, 0.1, random).length, 1)
    assert.equal(choosePackSubset(packs, 100, random).length, 40)
    assert.throws(() => choosePackSubset(packs, 0, random))
    assert.equal(parseSubset('10%'), 10)
    assert.equal(parseSubset('2.5'), 2.5)
    assert.equal(parseSubset('0%'), undefined)
    assert.equal(parseSubset('101%'), undefined)
    assert.equal(parseSubset('ten'), undefined)
  })

  it('a tree must match its manifest, and a config must be one this version reads', () => {
    const manifest = {files: [{path: 'db/mlflow.db', size: 3, sha256: id(1)}]} as never
    const tree = {manifestSha256: 'm', files: [{path: 'db/mlflow.db', size: 3, sha256: id(1), blobs: [id(2)]}]}
    assert.equal(invalidTree(tree, manifest, 'm'), undefined)
    assert.match(invalidTree(tree, manifest, 'other')!, /manifest was changed/)
    assert.match(invalidTree({...tree, files: [{...tree.files[0], size: 4}]}, manifest, 'm')!, /differs/)
    assert.match(invalidTree({...tree, files: [{...tree.files[0], blobs: ['../x']}]}, manifest, 'm')!, /malformed/)
    assert.match(invalidConfig({repository: 'mlflowctl', version: 2})!, /version 2/)
    assert.match(
      invalidConfig({repository: 'mlflowctl', version: 1, format: 'snapshot', chunker: {min: 5, avg: 4, max: 9}})!,
      /chunker/,
    )
  })
})

describe('blob codec', () => {
  it('compresses what compresses, stores the rest raw, and opens both checked against the ID', async () => {
    const text = Buffer.from('metric_0 0.125 1700000000000\n'.repeat(10_000))
    const noise = randomBytes(200_000)
    const packedText = await seal(text, undefined)
    const packedNoise = await seal(noise, undefined)
    assert.ok(packedText.length < text.length / 10, `${packedText.length}`)
    assert.equal(packedNoise.length, noise.length + 1)
    assert.ok((await unseal(packedText, undefined, blobId(text, undefined), 'blob')).equals(text))
    await assert.rejects(unseal(packedNoise, undefined, blobId(text, undefined), 'blob'), /does not match its ID/)
  })

  it('sealed: a wrong passphrase is refused by the check, a changed byte fails authentication, IDs are keyed', async () => {
    const {params, keys} = await newKeys('right passphrase')
    const other = await unlockKeys('repo', params, 'right passphrase')
    assert.ok(other.encrypt.equals(keys.encrypt))
    await assert.rejects(
      unlockKeys('repo', params, 'wrong'),
      (error: MlflowctlError) => error.code === 'BACKUP_DECRYPT_FAILED',
    )
    await assert.rejects(
      unlockKeys('repo', params, undefined),
      (error: MlflowctlError) => error.code === 'PASSPHRASE_REQUIRED',
    )
    await assert.rejects(
      unlockKeys('repo', {...params, N: 2 ** 24}, 'right passphrase'),
      (error: MlflowctlError) => error.code === 'BACKUP_CORRUPT',
    )
    const raw = Buffer.from('model weights, secret')
    // Keyed IDs: the plain SHA-256 of a known file does not reveal that the repository holds it.
    assert.notEqual(blobId(raw, keys), blobId(raw, undefined))
    const sealed = await seal(raw, keys)
    assert.ok(!sealed.includes(Buffer.from('secret')))
    assert.ok((await unseal(sealed, keys, blobId(raw, keys), 'blob')).equals(raw))
    sealed[20] ^= 1
    await assert.rejects(unseal(sealed, keys, blobId(raw, keys), 'blob'), /fails authentication/)
  })
})
