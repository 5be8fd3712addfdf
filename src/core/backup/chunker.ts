/**
 * Content-defined chunking (FastCDC, with normalised chunking): cut points depend on the bytes around them, not on
 * their offset, so that an insertion early in a file moves only the chunks it touches and the rest dedupe. A rolling
 * "gear" hash over the last 32 bytes; a cut where its top bits are zero, with a stricter mask before the average size
 * and a looser one after it, which keeps sizes close to the average. Pure.
 *
 * Written here rather than taken from npm: the packages found were young single-author wasm builds, and the
 * algorithm is a loop of a dozen lines whose output must never change (it decides which blobs dedupe).
 */
import type {ChunkerParams} from './snapshots.js'

/** 256 fixed pseudo-random words (xorshift32 from a fixed seed): changing them would change every cut point. */
const GEAR = (() => {
  const table = new Int32Array(256)
  let state = 0x9e3779b9
  for (let i = 0; i < 256; i++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    table[i] = state | 0
  }
  return table
})()

/** A mask of `bits` ones in the top bits of a 32-bit word (the gear hash's top bits see the most bytes). */
const topBits = (bits: number) => (bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1)) | 0

export interface Cutter {
  /** Where the first chunk of data[start, end) ends (exclusive); `end` when no cut point comes before it. */
  cut(data: Uint8Array, start: number, end: number): number
}

export function fastCdc(params: ChunkerParams): Cutter {
  const bits = Math.round(Math.log2(params.avg))
  const maskS = topBits(bits + 2)
  const maskL = topBits(bits - 2)
  return {
    cut(data, start, end) {
      const length = end - start
      if (length <= params.min) return end
      const limit = Math.min(length, params.max)
      const normal = Math.min(limit, params.avg)
      let hash = 0
      let i = start + params.min
      const normalEnd = start + normal
      const limitEnd = start + limit
      for (; i < normalEnd; i++) {
        hash = ((hash << 1) + GEAR[data[i]]) | 0
        if ((hash & maskS) === 0) return i + 1
      }
      for (; i < limitEnd; i++) {
        hash = ((hash << 1) + GEAR[data[i]]) | 0
        if ((hash & maskL) === 0) return i + 1
      }
      return limitEnd
    },
  }
}

/**
 * Splits a stream of buffers into content-defined chunks. Holds at most about two maximum chunks besides the input
 * piece. The chunks are views, not copies: no buffer handed in or made here is written to afterwards, so a view stays
 * valid while it is compressed and packed (the input must not reuse its buffers; file streams do not).
 */
export async function* chunkStream(input: AsyncIterable<Uint8Array>, params: ChunkerParams): AsyncIterable<Buffer> {
  const cutter = fastCdc(params)
  let pending: Buffer = Buffer.alloc(0)
  for await (const piece of input) {
    const bytes = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
    pending = pending.length === 0 ? bytes : Buffer.concat([pending, bytes])
    let start = 0
    // Cut only while a whole maximum chunk is buffered: with less, the cut could lie in bytes not yet read.
    while (pending.length - start >= params.max) {
      const end = cutter.cut(pending, start, pending.length)
      yield pending.subarray(start, end)
      start = end
    }
    pending = start === 0 ? pending : pending.subarray(start)
  }
  let start = 0
  while (start < pending.length) {
    const end = cutter.cut(pending, start, pending.length)
    yield pending.subarray(start, end)
    start = end
  }
}
