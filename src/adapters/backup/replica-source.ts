// A replica made by the extension's ReplicationService: a directory or an s3://, wasbs://, gs:// prefix,
// read through one small reader. `backup restore --from-replica` replays it into one SQLite file (the generation's
// snapshot, then each segment's committed frames, every segment checked as it comes: its SHA-256, SQLite's checksum
// chain and salts, that it starts where the last ended) and hands that file, with the replica's artifacts, to the same
// checked, swap-in paths as a format 2 backup. `replica status` summarizes it.
import {createHash} from 'node:crypto'
import {createReadStream, createWriteStream} from 'node:fs'
import {open, readFile, rename, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {gunzipSync, createGunzip} from 'node:zlib'

import Database from 'better-sqlite3'
import {z} from 'zod'

import {SQLITE_FILE_ENTRY, unsafeEntryName, type BackupManifest} from '../../core/backup/format.js'
import {
  WAL_FRAME_HEADER_BYTES,
  continuityProblem,
  foreignProblem,
  lastMomentBefore,
  momentText,
  replayPlan,
  walChecksum,
  type GenerationInfo,
  type SegmentInfo,
  type DamagedSidecar,
  type ReplicaContents,
} from '../../core/replica.js'
import {CheckFailedError, UsageError} from '../../errors.js'
import {makeDirs} from '../fs/safe-fs.js'
import {isNotFound, openStore, type StoreEntry} from '../store/index.js'
import {describeSqliteSnapshot} from './sqlite-source.js'

const corrupt = (why: string, suggestions: string[] = []) => new CheckFailedError('REPLICA_CORRUPT', why, {suggestions})
/** The suggestion of a damaged replica: the newest moment that restores without what is damaged. */
const restoresUpTo = (moment: number) => [
  `The replica restores up to ${momentText(moment)} (the commit before it): --at ${momentText(moment)}`,
]

/** Keys are relative to the replica's root ("generations/<id>/snapshot.json"). */
export interface ReplicaReader {
  display: string
  list(prefix: string): Promise<Array<{key: string; size: number}>>
  get(key: string): Promise<Buffer>
  downloadFile(key: string, file: string): Promise<void>
}

/** A directory or an object-store prefix, with the SDK's credentials (as MLflow's clients find them). */
export async function openReplica(url: string, env: NodeJS.ProcessEnv = process.env): Promise<ReplicaReader> {
  const store = await openStore(url, {env})
  return {
    display: store.display,
    async list(prefix) {
      // A file still being written by the replicator (a directory replica's *.partial) is not part of it yet.
      const found: StoreEntry[] = []
      for await (const entry of store.entries(prefix)) if (!entry.key.endsWith('.partial')) found.push(entry)
      return found.sort((a, b) => a.key.localeCompare(b.key))
    },
    get: (key) => store.get(key),
    downloadFile: (key, file) => store.downloadFile(key, file),
  }
}

/** Runs `task` over `items`, `width` at a time, keeping their order in the result. */
async function inOrder<T, R>(items: T[], width: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const at = next++
      results[at] = await task(items[at])
    }
  }
  await Promise.all(Array.from({length: Math.min(width, items.length)}, worker))
  return results
}

const SEGMENT_KEY = /^generations\/([^/]+)\/wal\/([0-9a-f]{8})\/([0-9a-f]{16})-([0-9a-f]{16})\.frames\.gz\.json$/
const SNAPSHOT_KEY = /^generations\/([^/]+)\/snapshot\.json$/
const SEGMENT_DATA_KEY = /^generations\/([^/]+)\/wal\/[0-9a-f]{8}\/[0-9a-f]{16}-[0-9a-f]{16}\.frames\.gz$/

// What the replicator writes (templates/extension/mlflowctl_extension/replica_layout.py): a file that parses but lacks a
// field is as damaged as one that does not parse, and is refused before anything reads the field.
const count = z.number().int().nonnegative()
const chain = z.tuple([z.number().int(), z.number().int()])
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/)
export const snapshotSchema = z
  .object({
    sha256: sha256Hex,
    bytes: count,
    takenAt: z.number(),
    offset: count,
    salts: chain.nullable().optional(),
    chain: chain.optional(),
    identity: z.string().optional(),
  })
  .passthrough()
/** The replica's own file: its format and the database it belongs to. */
const META_KEY = 'mlflowctl-replica.json'
// Every field optional: a replica made before a field existed (or an empty {}) is read as it is.
export const metaSchema = z
  .object({
    format: z.number().int().positive().optional(),
    database: z.string().optional(),
    identity: z.string().optional(),
    artifactsRoot: z.string().nullable().optional(),
  })
  .passthrough()
export const segmentSchema = z
  .object({
    sha256: sha256Hex,
    frames: count,
    start: count,
    end: count,
    commitTime: z.number(),
    salts: chain,
    bigEndian: z.boolean(),
    pageSize: z.number().int().positive(),
    chainBefore: chain,
    chainAfter: chain,
    previousIndexEnd: count.nullable().optional(),
    identity: z.string().optional(),
    points: z.array(z.object({end: count, commitTime: z.number(), chainAfter: chain}).passthrough()).optional(),
  })
  .passthrough()

/** A replica's JSON file, parsed and checked against its schema. @throws CheckFailedError REPLICA_CORRUPT */
async function readChecked<T>(reader: ReplicaReader, key: string, schema: z.ZodType<T>): Promise<T> {
  return parseChecked(reader.display, key, (await reader.get(key)).toString('utf8'), schema)
}

function parseChecked<T>(display: string, key: string, text: string, schema: z.ZodType<T>): T {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw corrupt(`Replica ${display}: ${key} is not valid JSON (${(error as Error).message}); nothing was restored.`)
  }
  const checked = schema.safeParse(parsed)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    throw corrupt(
      `Replica ${display}: ${key} is damaged (${issue.path.join('.') || 'the file'}: ${issue.message}); nothing was restored.`,
    )
  }
  return checked.data
}

export type {DamagedSidecar, ReplicaContents} from '../../core/replica.js'

/** What a replica holds. Reads only. @throws UsageError REPLICA_NOT_FOUND */
export async function readReplica(reader: ReplicaReader): Promise<ReplicaContents> {
  const stored = await reader.get(META_KEY).catch(() => undefined)
  if (!stored)
    throw new UsageError(
      'REPLICA_NOT_FOUND',
      `${reader.display} is not an mlflowctl replica (no mlflowctl-replica.json).`,
      {
        suggestions: ["Name the directory or prefix the extension's MLFLOWCTL_REPLICA_URL points at."],
      },
    )
  const meta: ReplicaContents['meta'] = parseChecked(reader.display, META_KEY, stored.toString('utf8'), metaSchema)
  const keys = await reader.list('generations/')
  const sizes: ReplicaContents['sizes'] = {generations: {}, artifacts: {files: 0, bytes: 0}}
  for (const {key, size} of keys) {
    const id = key.split('/')[1]
    sizes.generations[id] = (sizes.generations[id] ?? 0) + size
  }
  const artifactKeys: string[] = []
  for (const {key, size} of await reader.list('artifacts/')) {
    sizes.artifacts.files++
    sizes.artifacts.bytes += size
    artifactKeys.push(key)
  }
  const ids = keys.flatMap(({key}) => SNAPSHOT_KEY.exec(key)?.[1] ?? [])
  const sidecars = keys.flatMap(({key}) => {
    const match = SEGMENT_KEY.exec(key)
    return match ? [{key, id: match[1], index: Number.parseInt(match[2], 16)}] : []
  })
  // A generation without snapshot.json was never finished: restores skip it.
  // Listed, then gone before it was read: retention or compaction deleted it meanwhile, as they may once nothing in
  // the window needs it. It is left out as if the listing had not seen it; continuity finds any gap that matters.
  const unlessGone = <T>(promise: Promise<T>) =>
    promise.catch((error: unknown) => (isNotFound(error) ? undefined : Promise.reject(error)))
  const snapshots = await inOrder(ids, 16, (id) =>
    unlessGone(readChecked(reader, `generations/${id}/snapshot.json`, snapshotSchema)),
  )
  const damaged: DamagedSidecar[] = []
  const read = await inOrder(sidecars, 16, async ({key, id, index}) => {
    try {
      const info = (await unlessGone(readChecked(reader, key, segmentSchema))) as
        Omit<SegmentInfo, 'path' | 'walIndex'> | undefined
      if (!info) return undefined
      const path = key.split('/').slice(2).join('/').slice(0, -'.json'.length)
      return {...info, path, walIndex: index}
    } catch (error) {
      if (!(error instanceof CheckFailedError)) throw error
      // Kept aside rather than fatal: the moments before this segment still restore.
      const start = Number.parseInt(SEGMENT_KEY.exec(key)![3], 16)
      damaged.push({key, generation: id, walIndex: index, start, why: error.message})
      return undefined
    }
  })
  const segments = read.filter((segment) => segment !== undefined)
  const readSidecars = sidecars.filter((_, i) => read[i] !== undefined)
  // Segment data without its sidecar: one being written right now, or one whose sidecar was lost.
  const listed = new Set(sidecars.map(({key}) => key.slice(0, -'.json'.length)))
  const unlisted = keys.filter(({key}) => SEGMENT_DATA_KEY.test(key) && !listed.has(key)).map(({key}) => key)
  const generations = ids.flatMap((id, at): GenerationInfo[] => {
    if (!snapshots[at]) return []
    const mine = segments
      .filter((_, i) => readSidecars[i].id === id)
      .sort((a, b) => a.walIndex - b.walIndex || a.start - b.start)
    const walIndexes: GenerationInfo['walIndexes'] = []
    for (const segment of mine) {
      if (walIndexes.at(-1)?.index !== segment.walIndex) walIndexes.push({index: segment.walIndex, segments: []})
      walIndexes.at(-1)!.segments.push(segment)
    }
    return [{id, snapshot: snapshots[at], walIndexes}]
  })
  return {meta, generations, sizes, unlisted, artifactKeys, damaged}
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

/** The frames of one segment, checked against its sidecar and SQLite's own checksum chain. @throws REPLICA_CORRUPT */
function checkedFrames(segment: SegmentInfo, stored: Buffer, where: string): Buffer {
  if (sha256(stored) !== segment.sha256) throw corrupt(`${where} does not match its SHA-256.`)
  const frames = gunzipSync(stored)
  const frameSize = WAL_FRAME_HEADER_BYTES + segment.pageSize
  if (frames.length !== segment.end - segment.start || frames.length % frameSize !== 0)
    throw corrupt(`${where} holds ${frames.length} bytes of frames, its sidecar says ${segment.end - segment.start}.`)
  let chain = segment.chainBefore
  let lastCommit = false
  for (let at = 0; at < frames.length; at += frameSize) {
    const header = frames.subarray(at, at + WAL_FRAME_HEADER_BYTES)
    if (header.readUInt32BE(8) !== segment.salts[0] || header.readUInt32BE(12) !== segment.salts[1])
      throw corrupt(`${where}: a frame's salts differ from its WAL's.`)
    if (header.readUInt32BE(0) === 0) throw corrupt(`${where}: a frame names page 0.`)
    chain = walChecksum(header.subarray(0, 8), segment.bigEndian, chain)
    chain = walChecksum(frames.subarray(at + WAL_FRAME_HEADER_BYTES, at + frameSize), segment.bigEndian, chain)
    if (chain[0] !== header.readUInt32BE(16) || chain[1] !== header.readUInt32BE(20))
      throw corrupt(`${where}: SQLite's checksums do not check (the frames were changed).`)
    lastCommit = header.readUInt32BE(4) !== 0
  }
  if (!lastCommit || chain[0] !== segment.chainAfter[0] || chain[1] !== segment.chainAfter[1])
    throw corrupt(`${where}: it does not end with a committed transaction.`)
  if (!segment.cut) return frames
  // Restored to a commit point inside a merged segment: the chain at that point must be the one recorded.
  const length = segment.cut.end - segment.start
  chain = segment.chainBefore
  for (let at = 0; at < length; at += frameSize) {
    chain = walChecksum(frames.subarray(at, at + 8), segment.bigEndian, chain)
    chain = walChecksum(frames.subarray(at + WAL_FRAME_HEADER_BYTES, at + frameSize), segment.bigEndian, chain)
  }
  const isCommit = length >= frameSize && frames.readUInt32BE(length - frameSize + 4) !== 0
  if (
    length % frameSize !== 0 ||
    !isCommit ||
    chain[0] !== segment.cut.chainAfter[0] ||
    chain[1] !== segment.cut.chainAfter[1]
  )
    throw corrupt(`${where}: its commit point at ${segment.cut.end} does not check.`)
  return frames.subarray(0, length)
}

export interface Replayed {
  generation: string
  frames: number
  reachedAt: number
  contents: ReplicaContents
  /** What the operator must know about the moment reached (segments past it that lost their sidecar). */
  warnings: string[]
}

/** Segment files of `generation` past the last replayed segment that have no sidecar, as keys. Pure. */
function unlistedAfter(contents: ReplicaContents, generation: string, last: SegmentInfo | undefined): string[] {
  return contents.unlisted.filter((key) => {
    const [, id, index, start] = /^generations\/([^/]+)\/wal\/([0-9a-f]{8})\/([0-9a-f]{16})-/.exec(key) ?? []
    if (id !== generation) return false
    if (!last) return true
    const walIndex = Number.parseInt(index, 16)
    return walIndex > last.walIndex || (walIndex === last.walIndex && Number.parseInt(start, 16) >= last.end)
  })
}

/**
 * Rebuilds the database as of `at` (Unix seconds; undefined: everything shipped) into `file`, a scratch file: segments
 * are fetched eight at a time, each checked before its frames are written; the first that fails stops the replay
 * (REPLICA_CORRUPT) with the last moment that can still be restored, and the caller's scratch space goes with it.
 * @throws CheckFailedError REPLICA_CORRUPT, UsageError REPLICA_NOT_FOUND, REPLICA_EMPTY
 */
export async function replayReplica(reader: ReplicaReader, at: number | undefined, file: string): Promise<Replayed> {
  const contents = await readReplica(reader)
  const plan = replayPlan(contents.generations, at)
  if ('error' in plan) throw new UsageError('REPLICA_EMPTY', `Replica ${reader.display}: ${plan.error}.`)
  const {generation, segments} = plan
  const base = `generations/${generation.id}`
  const stranger = foreignProblem(contents.meta.identity, generation, segments)
  if (stranger)
    throw new CheckFailedError('REPLICA_FOREIGN', `Replica ${reader.display}: ${stranger}; nothing was restored.`, {
      suggestions: [
        'Two deployments must not share a replica URL; remove what another database wrote there, or restore from its own replica.',
      ],
    })
  // A damaged sidecar hides its segment: the moments before it restore, "latest" and any later moment do not.
  const blocking = contents.damaged
    .filter((sidecar) => sidecar.generation === generation.id)
    .map((sidecar) => ({...sidecar, before: lastMomentBefore(generation, sidecar.walIndex, sidecar.start)}))
    .sort((a, b) => a.before - b.before)[0]
  if (blocking && (at === undefined || Math.floor(at * 1000) > Math.floor(blocking.before * 1000)))
    throw corrupt(
      blocking.why.replace(
        /; nothing was restored\.$/,
        `, so ${generation.id} cannot be replayed past it; nothing was restored.`,
      ),
      restoresUpTo(blocking.before),
    )
  const problem = continuityProblem(generation, segments)
  if (problem) throw corrupt(`Replica ${reader.display}: ${problem}.`)
  const packed = `${file}.snapshot.gz`
  await reader.downloadFile(`${base}/snapshot.db.gz`, packed)
  if (sha256(await readFile(packed)) !== generation.snapshot.sha256)
    throw corrupt(
      `Replica ${reader.display}: ${generation.id}/snapshot.db.gz does not match its SHA-256; nothing was restored.`,
    )
  await pipeline(createReadStream(packed), createGunzip(), createWriteStream(file, {mode: 0o600}))
  const handle = await open(file, 'r+')
  let frames = 0
  let reachedAt = generation.snapshot.takenAt
  try {
    // Fetched in windows of eight, applied in order: memory holds a window, not the replica.
    for (let from = 0; from < segments.length; from += 8) {
      const window = segments.slice(from, from + 8)
      const stored = await inOrder(window, 8, (segment) =>
        reader
          .get(`${base}/${segment.path}`)
          .catch((error) =>
            Promise.reject(
              isNotFound(error)
                ? corrupt(
                    `Replica ${reader.display}: ${generation.id}/${segment.path} is missing (its sidecar is there); nothing was restored.`,
                    restoresUpTo(lastMomentBefore(generation, segment.walIndex, segment.start)),
                  )
                : error,
            ),
          ),
      )
      for (const [position, segment] of window.entries()) {
        let data: Buffer
        try {
          data = checkedFrames(segment, stored[position], `${generation.id}/${segment.path}`)
        } catch (error) {
          throw error instanceof CheckFailedError
            ? corrupt(`Replica ${reader.display}: ${error.message} Nothing was restored.`, restoresUpTo(reachedAt))
            : error
        }
        const frameSize = WAL_FRAME_HEADER_BYTES + segment.pageSize
        for (let offset = 0; offset < data.length; offset += frameSize) {
          const page = data.readUInt32BE(offset)
          const size = data.readUInt32BE(offset + 4)
          await handle.write(data, offset + WAL_FRAME_HEADER_BYTES, segment.pageSize, (page - 1) * segment.pageSize)
          if (size !== 0) await handle.truncate(size * segment.pageSize)
          frames++
        }
        reachedAt = segment.cut?.commitTime ?? segment.commitTime
      }
    }
    await handle.sync()
  } finally {
    await handle.close()
  }
  // The snapshot was taken from a database in WAL mode: made self-contained, like a format 2 backup's file.
  const db = new Database(file)
  try {
    db.pragma('journal_mode = DELETE')
  } finally {
    db.close()
  }
  // Replayed to the end of what is listed (not stopped by --at): a segment after that may be missing from it.
  const listedLast = generation.walIndexes.at(-1)?.segments.reduce((a, b) => (b.end > a.end ? b : a))
  const replayedLast = segments.at(-1)
  const exhausted =
    !listedLast ||
    (replayedLast?.walIndex === listedLast.walIndex && replayedLast.end === listedLast.end && !replayedLast.cut)
  const lost = exhausted ? unlistedAfter(contents, generation.id, segments.at(-1)) : []
  const warnings = lost.map(
    (key) =>
      `${key} has no sidecar (${key.split('/').pop()}.json), so it was not replayed: the restore stops at ${new Date(reachedAt * 1000).toISOString()}, before it. If the replicator is writing it right now, restore again in a moment; otherwise its sidecar was lost and the rounds from it on cannot be restored.`,
  )
  return {generation: generation.id, frames, reachedAt, contents, warnings}
}

/**
 * The manifest a restore from a replica works with: the replayed file as format 2's db/mlflow.db, its row counts and
 * revision read from it, and every artifact the replica holds (those shipped after the moment too: files no row
 * references are harmless). Reads only.
 */
export async function replicaManifest(display: string, file: string, replayed: Replayed): Promise<BackupManifest> {
  const {rowCounts, alembicRevision} = describeSqliteSnapshot(file)
  const {artifacts} = replayed.contents.sizes
  return {
    format: 2,
    id: `replica ${replayed.generation} at ${new Date(replayed.reachedAt * 1000).toISOString()}`,
    createdAt: new Date(replayed.reachedAt * 1000).toISOString(),
    toolVersion: 'replica',
    source: {kind: 'sqlite', location: display, engine: 'sqlite'},
    alembicRevision,
    envNames: [],
    rowCounts,
    artifacts: {
      mode: artifacts.files > 0 ? 'all' : 'none',
      files: artifacts.files,
      bytes: artifacts.bytes,
      ...(replayed.contents.meta.artifactsRoot ? {root: replayed.contents.meta.artifactsRoot} : {}),
    },
    files: [{path: SQLITE_FILE_ENTRY, size: (await stat(file)).size, sha256: ''}],
  }
}

/** Puts the replayed file where an extracted archive's database would be, and the replica's artifacts beside it. */
export async function placeReplayed(
  reader: ReplicaReader,
  contents: ReplicaContents,
  file: string,
  dir: string,
): Promise<number> {
  await makeDirs(join(dir, 'db'))
  await rename(file, join(dir, SQLITE_FILE_ENTRY))
  // The artifacts of the one listing the manifest was made from: one shipped since is the next restore's.
  const artifacts = contents.artifactKeys
  for (const key of artifacts) {
    const problem = unsafeEntryName(key)
    if (problem) throw corrupt(`Replica ${reader.display}: artifact ${key} ${problem}; nothing was restored.`)
  }
  await inOrder(artifacts, 8, async (key) => {
    await makeDirs(dirname(join(dir, key)))
    await reader
      .downloadFile(key, join(dir, key))
      .catch((error) =>
        Promise.reject(
          isNotFound(error)
            ? corrupt(`Replica ${reader.display}: artifact ${key} was listed but is gone; nothing was restored.`)
            : error,
        ),
      )
  })
  return artifacts.length
}
