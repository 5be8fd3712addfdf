/**
 * A replica made by the extension's ReplicationService (templates/extension/mlflowctl_extension/replica.py; issue 19,
 * docs/design/replication.md): which generation and which WAL segments rebuild the database as of a moment, and
 * SQLite's WAL checksum that proves a segment's frames are the ones SQLite wrote. Pure.
 */

export interface SnapshotInfo {
  sha256: string
  bytes: number
  takenAt: number
  offset: number
}

export interface SegmentInfo {
  /** Where it lives, relative to the generation ("wal/00000001/…frames.gz"). */
  path: string
  walIndex: number
  sha256: string
  frames: number
  start: number
  end: number
  commitTime: number
  salts: [number, number]
  bigEndian: boolean
  pageSize: number
  chainBefore: [number, number]
  chainAfter: [number, number]
  previousIndexEnd?: number
}

export interface GenerationInfo {
  id: string
  snapshot: SnapshotInfo
  /** Every WAL index directory, in order, with its segments in order. */
  walIndexes: Array<{index: number; segments: SegmentInfo[]}>
}

export const WAL_HEADER_BYTES = 32
export const WAL_FRAME_HEADER_BYTES = 24

/** The generation to restore `at` (Unix seconds; undefined: the newest) and its segments up to then, in order. */
export function replayPlan(
  generations: GenerationInfo[],
  at: number | undefined,
): {generation: GenerationInfo; segments: SegmentInfo[]} | {error: string} {
  const sorted = [...generations].sort((a, b) => a.id.localeCompare(b.id))
  const generation = [...sorted].reverse().find((g) => at === undefined || g.snapshot.takenAt <= at)
  if (!generation) return {error: sorted.length === 0 ? 'it holds no generation' : `it holds nothing as old as ${at}`}
  const segments: SegmentInfo[] = []
  for (const {segments: inIndex} of generation.walIndexes)
    for (const segment of inIndex) if (at === undefined || segment.commitTime <= at) segments.push(segment)
  return {generation, segments}
}

/**
 * Continuity of the chosen segments: each starts where the one before it ended (the first at the snapshot's offset,
 * the first of a later WAL index at the header and naming where the index before it ended). Returns the first
 * problem, or undefined.
 */
export function continuityProblem(generation: GenerationInfo, segments: SegmentInfo[]): string | undefined {
  const indexes = generation.walIndexes.map((entry) => entry.index)
  const gap = indexes.findIndex((index, position) => index !== position)
  if (gap !== -1) return `WAL index ${gap} of generation ${generation.id} is missing`
  let expected = generation.snapshot.offset
  let index = 0
  for (const segment of segments) {
    while (segment.walIndex > index) {
      index++
      const previousEnd = expected
      expected = WAL_HEADER_BYTES
      if (segment.walIndex === index && segment.start === WAL_HEADER_BYTES && segment.previousIndexEnd !== previousEnd)
        return `a segment is missing at the end of WAL index ${index - 1} (it ended at ${previousEnd}, ${segment.path} says ${segment.previousIndexEnd})`
    }
    if (segment.start !== expected)
      return `a segment is missing before ${segment.path} (it starts at ${segment.start}, the one before ended at ${expected})`
    expected = segment.end
  }
  return undefined
}

/** SQLite's WAL checksum (walChecksumBytes) continued over `data`: 32-bit words two at a time, modulo 2^32. */
export function walChecksum(data: Uint8Array, bigEndian: boolean, start: [number, number]): [number, number] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let [s0, s1] = start
  for (let at = 0; at + 8 <= data.byteLength; at += 8) {
    s0 = (s0 + view.getUint32(at, !bigEndian) + s1) >>> 0
    s1 = (s1 + view.getUint32(at + 4, !bigEndian) + s0) >>> 0
  }
  return [s0, s1]
}
