/**
 * A replica made by the extension's ReplicationService (templates/extension/mlflowctl_extension/replicator.py and
 * replica_layout.py; docs/design/replication.md): which generation and which WAL segments rebuild the database as of a moment, and
 * SQLite's WAL checksum that proves a segment's frames are the ones SQLite wrote. Pure.
 */

export interface SnapshotInfo {
  sha256: string
  bytes: number
  takenAt: number
  offset: number
  /** The WAL the snapshot was taken in (null: none yet) and SQLite's checksum chain at `offset`. */
  salts?: [number, number] | null
  chain?: [number, number]
  /** The database the generation belongs to (replicas made before identities have none). */
  identity?: string
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
  /** The database that wrote it (replicas made before identities have none). */
  identity?: string
  /** A merged segment (compaction): each merged segment's end, commit time and chain, so a restore can stop at any. */
  points?: Array<{end: number; commitTime: number; chainAfter: [number, number]}>
  /** Set by replayPlan: restore only up to this commit point of a merged segment. */
  cut?: {end: number; commitTime: number; chainAfter: [number, number]}
}

export interface GenerationInfo {
  id: string
  snapshot: SnapshotInfo
  /** Every WAL index directory, in order, with its segments in order. */
  walIndexes: Array<{index: number; segments: SegmentInfo[]}>
}

export const WAL_HEADER_BYTES = 32
export const WAL_FRAME_HEADER_BYTES = 24

/** Generations in the order they began (two begun in the same second have IDs that sort by their random part). */
export function byStart(generations: GenerationInfo[]): GenerationInfo[] {
  return [...generations].sort((a, b) => a.snapshot.takenAt - b.snapshot.takenAt || a.id.localeCompare(b.id))
}

/** The generation to restore `at` (Unix seconds; undefined: the newest) and its segments up to then, in order. */
export function replayPlan(
  generations: GenerationInfo[],
  at: number | undefined,
): {generation: GenerationInfo; segments: SegmentInfo[]} | {error: string} {
  const sorted = byStart(generations)
  // Moments are compared to the millisecond, as they are printed and as --at is given.
  const notAfter = (moment: number) => at === undefined || Math.floor(moment * 1000) <= Math.floor(at * 1000)
  const generation = [...sorted].reverse().find((g) => notAfter(g.snapshot.takenAt))
  if (!generation)
    return {
      error:
        sorted.length === 0
          ? 'it holds no generation'
          : `it holds nothing as old as ${momentText(at!)}; the oldest moment it restores is ${momentText(sorted[0].snapshot.takenAt)}`,
    }
  const segments: SegmentInfo[] = []
  for (const {segments: inIndex} of generation.walIndexes) {
    // A merged segment first, then what it merged (still there when its compaction was cut short): skipped.
    const ordered = [...inIndex].sort((a, b) => a.start - b.start || b.end - a.end)
    let covered = -1
    for (const segment of ordered) {
      if (segment.end <= covered) continue
      covered = segment.end
      const first = segment.points?.[0]?.commitTime ?? segment.commitTime
      if (!notAfter(first)) return {generation, segments}
      if (notAfter(segment.commitTime)) {
        segments.push(segment)
        continue
      }
      // Part of a merged segment: up to its last commit point not after the moment, and nothing after it.
      segments.push({...segment, cut: segment.points!.filter((point) => notAfter(point.commitTime)).at(-1)!})
      return {generation, segments}
    }
  }
  return {generation, segments}
}

/**
 * The newest moment of `generation` that needs nothing from WAL index `walIndex` at `start` or after it: the last commit
 * shipped before that position, or the snapshot. Pure.
 */
export function lastMomentBefore(generation: GenerationInfo, walIndex: number, start: number): number {
  const before = generation.walIndexes
    .flatMap((entry) => entry.segments)
    .filter((segment) => segment.walIndex < walIndex || (segment.walIndex === walIndex && segment.end <= start))
  return Math.max(generation.snapshot.takenAt, ...before.map((segment) => segment.commitTime))
}

/**
 * Continuity of the chosen segments: each starts where the one before it ended (the first at the snapshot's offset,
 * the first of the next WAL index at the header and naming where the index before it ended). WAL index 0 may hold
 * nothing (the WAL restarted before anything was shipped after the snapshot); every later index holds at least one
 * segment (the replicator opens an index with its first segment), so a skipped index number is a missing segment.
 * Returns the first problem, or undefined.
 */
export function continuityProblem(generation: GenerationInfo, segments: SegmentInfo[]): string | undefined {
  let expected = generation.snapshot.offset
  let index = 0
  // What the next segment continues: the snapshot's WAL and chain first, then each segment's.
  let salts = generation.snapshot.salts ?? undefined
  let chain = generation.snapshot.chain
  const same = (a: readonly number[] | undefined, b: readonly number[] | undefined) =>
    a !== undefined && b !== undefined && a[0] === b[0] && a[1] === b[1]
  for (const segment of segments) {
    if (segment.walIndex !== index) {
      if (segment.walIndex !== index + 1)
        return `WAL index ${index + 1} of generation ${generation.id} is missing (found ${segment.walIndex} after ${index})`
      if (segment.start === WAL_HEADER_BYTES && segment.previousIndexEnd !== expected)
        return `a segment is missing at the end of WAL index ${index} (it ended at ${expected}, ${segment.path} says ${segment.previousIndexEnd})`
      // A restart adds one to salt-1 (wal.c walRestartHdr): anything else is another WAL.
      if (salts && segment.salts[0] !== (salts[0] + 1) >>> 0)
        return `${segment.path} does not follow WAL index ${index} (salt-1 ${segment.salts[0]} after ${salts[0]})`
      index = segment.walIndex
      expected = WAL_HEADER_BYTES
    }
    if (segment.start !== expected)
      return `a segment is missing before ${segment.path} (it starts at ${segment.start}, the one before ended at ${expected})`
    if (
      segment.start !== WAL_HEADER_BYTES &&
      salts &&
      (!same(segment.salts, salts) || !same(segment.chainBefore, chain))
    )
      return `${segment.path} does not continue what came before it (its salts or checksum chain start elsewhere)`
    expected = segment.cut?.end ?? segment.end
    salts = segment.salts
    chain = segment.cut?.chainAfter ?? segment.chainAfter
  }
  return undefined
}

/**
 * A generation or segment of another database than the replica's (two deployments on one replica URL, a generation or
 * segment copied in): the reason, or undefined. Replicas made before identities carry none, and pass. Pure.
 */
export function foreignProblem(
  replicaIdentity: string | undefined,
  generation: GenerationInfo,
  segments: SegmentInfo[],
): string | undefined {
  const ours = generation.snapshot.identity ?? replicaIdentity
  if (replicaIdentity && generation.snapshot.identity && generation.snapshot.identity !== replicaIdentity)
    return `generation ${generation.id} belongs to another database (identity ${generation.snapshot.identity}; the replica's is ${replicaIdentity})`
  const stranger = segments.find((segment) => ours && segment.identity && segment.identity !== ours)
  return stranger
    ? `${generation.id}/${stranger.path} belongs to another database (identity ${stranger.identity}; the generation's is ${ours})`
    : undefined
}

export interface ReplicaSummary {
  generations: Array<{id: string; startedAt: string; endsAt: string; segments: number; bytes: number}>
  /** The moments a restore can reach: the oldest snapshot to the newest shipped commit. */
  window: {from: string; to: string} | null
  bytes: number
  artifacts: {files: number; bytes: number}
  /** Seconds from the newest shipped commit to `now` (how stale "latest" would be), null when nothing is shipped. */
  newestAgeSeconds: number | null
}

/** A moment as `--at` takes it back: ISO 8601 in UTC, to the millisecond (rounded down). Pure. */
export const momentText = (seconds: number) => new Date(Math.floor(seconds * 1000)).toISOString()
const iso = momentText

/** What `replica status` reports about a replica's contents. Pure. */
export function summarizeReplica(
  generations: GenerationInfo[],
  sizes: {generations: Record<string, number>; artifacts: {files: number; bytes: number}},
  now: number,
): ReplicaSummary {
  const rows = byStart(generations).map((generation) => {
    const segments = generation.walIndexes.flatMap((entry) => entry.segments)
    const end = Math.max(generation.snapshot.takenAt, ...segments.map((segment) => segment.commitTime))
    return {
      id: generation.id,
      startedAt: iso(generation.snapshot.takenAt),
      endsAt: iso(end),
      end,
      segments: segments.length,
      bytes: sizes.generations[generation.id] ?? 0,
    }
  })
  const newest = rows.length > 0 ? Math.max(...rows.map((row) => row.end)) : undefined
  return {
    generations: rows.map(({end: _end, ...row}) => row),
    window: rows.length > 0 ? {from: rows[0].startedAt, to: iso(newest!)} : null,
    bytes: rows.reduce((sum, row) => sum + row.bytes, 0) + sizes.artifacts.bytes,
    artifacts: sizes.artifacts,
    newestAgeSeconds: newest === undefined ? null : Math.max(0, Math.round((now - newest) * 10) / 10),
  }
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

/** What a replica holds, as read from its store. */
export interface ReplicaContents {
  meta: {artifactsRoot?: string | null; identity?: string}
  generations: GenerationInfo[]
  /** Stored bytes per generation, and the artifacts shipped. */
  sizes: {generations: Record<string, number>; artifacts: {files: number; bytes: number}}
  /** The artifacts' keys, from the same listing as their count: a restore fetches exactly these. */
  artifactKeys: string[]
  /** Segment files without their sidecar (keys): never replayed. */
  unlisted: string[]
  /** Sidecars that do not read (empty, cut short, edited): their segments are not listed, and a restore stops before them. */
  damaged: DamagedSidecar[]
}

export interface DamagedSidecar {
  key: string
  generation: string
  walIndex: number
  start: number
  why: string
}
