/**
 * gzip on every core, the way pigz does it: the stream is cut into chunks that are compressed as independent gzip
 * members, several at once on libuv's thread pool (node:zlib's async calls run there), and written in order. The
 * result is one valid gzip file: RFC 1952 allows any number of members and gunzip, tar and node:zlib read them as
 * one stream. A chunk that does not shrink (model weights, images, archives: artifacts that are compressed
 * already) is stored (level 0) instead of being compressed for nothing. No dependency: node:zlib only.
 */
import {Transform, type TransformCallback} from 'node:stream'
import {promisify} from 'node:util'
import {gzip, type ZlibOptions} from 'node:zlib'

const gzipAsync = promisify(gzip) as (buffer: Buffer, options: ZlibOptions) => Promise<Buffer>

export interface ParallelGzipOptions {
  /** Bytes per member (default 1 MiB: large enough that the lost shared dictionary costs well under 1 %). */
  chunkBytes?: number
  /** Chunks compressed at once (default 4, libuv's default thread pool size). */
  parallel?: number
  level?: number
}

/** Probe a chunk's start at the fastest level; this ratio or worse means "already compressed": store the chunk. */
const SAMPLE_BYTES = 64 * 1024
const INCOMPRESSIBLE_RATIO = 0.97

/** Compresses one chunk as a gzip member, or stores it when a sample shows that it will not shrink. */
export async function compressChunk(chunk: Buffer, level: number): Promise<{member: Buffer; stored: boolean}> {
  const sample = chunk.subarray(0, SAMPLE_BYTES)
  const probe = await gzipAsync(sample, {level: 1})
  const stored = probe.length >= sample.length * INCOMPRESSIBLE_RATIO
  return {member: await gzipAsync(chunk, {level: stored ? 0 : level}), stored}
}

/** A Transform from bytes to gzip members; `stats` counts stored and compressed chunks (for benchmarks). */
export function parallelGzip(
  options: ParallelGzipOptions = {},
): Transform & {stats: {stored: number; compressed: number}} {
  const chunkBytes = options.chunkBytes ?? 1024 * 1024
  const parallel = options.parallel ?? 4
  const level = options.level ?? 6
  const inFlight: Array<Promise<{member: Buffer; stored: boolean}>> = []
  let pending: Buffer[] = []
  let pendingBytes = 0
  const stats = {stored: 0, compressed: 0}

  const submit = () => {
    if (pendingBytes === 0) return
    const chunk = Buffer.concat(pending, pendingBytes)
    pending = []
    pendingBytes = 0
    const job = compressChunk(chunk, level)
    job.catch(() => undefined) // awaited in order below; this only keeps an early failure from being "unhandled"
    inFlight.push(job)
  }
  const emitOldest = async (stream: Transform) => {
    const {member, stored} = await inFlight.shift()!
    if (stored) stats.stored++
    else stats.compressed++
    stream.push(member)
  }

  const stream = new Transform({
    transform(data: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      void (async () => {
        let offset = 0
        while (offset < data.length) {
          const take = Math.min(chunkBytes - pendingBytes, data.length - offset)
          pending.push(data.subarray(offset, offset + take))
          pendingBytes += take
          offset += take
          if (pendingBytes === chunkBytes) {
            submit()
            // Backpressure: at most `parallel` chunks in memory and in the pool.
            while (inFlight.length >= parallel) await emitOldest(this)
          }
        }
      })().then(() => done(), done)
    },
    flush(done: TransformCallback) {
      void (async () => {
        submit()
        // An empty input is still a valid gzip file: one empty member.
        if (inFlight.length === 0 && stats.stored + stats.compressed === 0)
          inFlight.push(compressChunk(Buffer.alloc(0), level))
        while (inFlight.length > 0) await emitOldest(this)
      })().then(() => done(), done)
    },
  })
  return Object.assign(stream, {stats})
}
