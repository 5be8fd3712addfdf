// `backup restore --from-replica DIR [--at TIME]` (issue 19): a directory replica made by the extension's
// ReplicationService, replayed into one SQLite file (the generation's snapshot, then each segment's committed frames),
// every segment checked first (its SHA-256, SQLite's checksum chain and salts, that it starts where the last ended).
// The file then goes through the same checked, swap-in paths as a format 2 backup: the restore sees a manifest.
import {createHash} from 'node:crypto'
import {createReadStream, createWriteStream} from 'node:fs'
import {open, readFile, readdir, rename, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {gunzipSync, createGunzip} from 'node:zlib'

import Database from 'better-sqlite3'

import {SQLITE_FILE_ENTRY, type BackupManifest} from '../../core/backup/format.js'
import {
  WAL_FRAME_HEADER_BYTES,
  continuityProblem,
  replayPlan,
  walChecksum,
  type GenerationInfo,
  type SegmentInfo,
} from '../../core/replica.js'
import {CheckFailedError, UsageError} from '../../errors.js'
import {makeDirs, pathKind} from '../fs/safe-fs.js'
import {describeSqliteSnapshot} from './sqlite-source.js'

const corrupt = (why: string, suggestions: string[] = []) => new CheckFailedError('REPLICA_CORRUPT', why, {suggestions})

/** What a directory replica holds. Reads only. @throws UsageError REPLICA_NOT_FOUND */
export async function readGenerations(dir: string): Promise<GenerationInfo[]> {
  if ((await pathKind(join(dir, 'mlflowctl-replica.json'))) !== 'file')
    throw new UsageError('REPLICA_NOT_FOUND', `${dir} is not an mlflowctl replica (no mlflowctl-replica.json).`, {
      suggestions: ["Name the directory the extension's MLFLOWCTL_REPLICA_URL points at."],
    })
  const generations: GenerationInfo[] = []
  const root = join(dir, 'generations')
  for (const id of (await readdir(root).catch(() => [] as string[])).sort()) {
    const snapshot = JSON.parse(await readFile(join(root, id, 'snapshot.json'), 'utf8').catch(() => 'null')) as
      GenerationInfo['snapshot'] | null
    if (!snapshot) continue // a generation whose snapshot was never finished
    const walIndexes: GenerationInfo['walIndexes'] = []
    for (const name of (await readdir(join(root, id, 'wal')).catch(() => [] as string[])).sort()) {
      const index = Number.parseInt(name, 16)
      const metas = (await readdir(join(root, id, 'wal', name)))
        .filter((file) => file.endsWith('.frames.gz.json'))
        .sort()
      const segments: SegmentInfo[] = []
      for (const meta of metas) {
        const info = JSON.parse(await readFile(join(root, id, 'wal', name, meta), 'utf8')) as Omit<
          SegmentInfo,
          'path' | 'walIndex'
        >
        segments.push({...info, path: `wal/${name}/${meta.slice(0, -'.json'.length)}`, walIndex: index})
      }
      walIndexes.push({index, segments})
    }
    generations.push({id, snapshot, walIndexes})
  }
  return generations
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
    chain = walChecksum(header.subarray(0, 8), segment.bigEndian, chain)
    chain = walChecksum(frames.subarray(at + WAL_FRAME_HEADER_BYTES, at + frameSize), segment.bigEndian, chain)
    if (chain[0] !== header.readUInt32BE(16) || chain[1] !== header.readUInt32BE(20))
      throw corrupt(`${where}: SQLite's checksums do not check (the frames were changed).`)
    lastCommit = header.readUInt32BE(4) !== 0
  }
  if (!lastCommit || chain[0] !== segment.chainAfter[0] || chain[1] !== segment.chainAfter[1])
    throw corrupt(`${where}: it does not end with a committed transaction.`)
  return frames
}

/**
 * Rebuilds the database as of `at` (Unix seconds; undefined: everything shipped) into `file`. Every segment is checked
 * before any is applied; the first that fails stops the restore (REPLICA_CORRUPT) with the last moment that can still be
 * restored. @throws CheckFailedError REPLICA_CORRUPT, UsageError REPLICA_NOT_FOUND
 */
export async function replayReplica(
  dir: string,
  at: number | undefined,
  file: string,
): Promise<{generation: string; frames: number; reachedAt: number}> {
  const plan = replayPlan(await readGenerations(dir), at)
  if ('error' in plan) throw new UsageError('REPLICA_EMPTY', `Replica ${dir}: ${plan.error}.`)
  const {generation, segments} = plan
  const base = join(dir, 'generations', generation.id)
  const problem = continuityProblem(generation, segments)
  if (problem) throw corrupt(`Replica ${dir}: ${problem}.`)
  const checked: Array<{segment: SegmentInfo; frames: Buffer}> = []
  let reachedAt = generation.snapshot.takenAt
  for (const segment of segments) {
    const where = `${generation.id}/${segment.path}`
    try {
      checked.push({segment, frames: checkedFrames(segment, await readFile(join(base, segment.path)), where)})
    } catch (error) {
      const moment = new Date(reachedAt * 1000).toISOString()
      throw error instanceof CheckFailedError
        ? corrupt(`Replica ${dir}: ${error.message} Nothing was restored.`, [
            `The replica restores up to ${moment} (the commit before it): --at ${moment}`,
          ])
        : error
    }
    reachedAt = segment.commitTime
  }
  const snapshotFile = join(base, 'snapshot.db.gz')
  if (sha256(await readFile(snapshotFile)) !== generation.snapshot.sha256)
    throw corrupt(`Replica ${dir}: ${generation.id}/snapshot.db.gz does not match its SHA-256; nothing was restored.`)
  await pipeline(createReadStream(snapshotFile), createGunzip(), createWriteStream(file, {mode: 0o600}))
  const handle = await open(file, 'r+')
  let frames = 0
  try {
    for (const {segment, frames: data} of checked) {
      const frameSize = WAL_FRAME_HEADER_BYTES + segment.pageSize
      for (let at = 0; at < data.length; at += frameSize) {
        const page = data.readUInt32BE(at)
        const size = data.readUInt32BE(at + 4)
        await handle.write(data, at + WAL_FRAME_HEADER_BYTES, segment.pageSize, (page - 1) * segment.pageSize)
        if (size !== 0) await handle.truncate(size * segment.pageSize)
        frames++
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
  return {generation: generation.id, frames, reachedAt}
}

/**
 * The manifest a restore from a replica works with: the replayed file as format 2's db/mlflow.db, its row counts and
 * revision read from it. No artifacts yet (the replicator does not ship them yet). Reads only.
 */
export async function replicaManifest(
  dir: string,
  file: string,
  replayed: {generation: string; reachedAt: number},
): Promise<BackupManifest> {
  const {rowCounts, alembicRevision} = describeSqliteSnapshot(file)
  return {
    format: 2,
    id: `replica ${replayed.generation} at ${new Date(replayed.reachedAt * 1000).toISOString()}`,
    createdAt: new Date(replayed.reachedAt * 1000).toISOString(),
    toolVersion: 'replica',
    source: {kind: 'sqlite', location: dir, engine: 'sqlite'},
    alembicRevision,
    envNames: [],
    rowCounts,
    artifacts: {mode: 'none', files: 0, bytes: 0},
    files: [{path: SQLITE_FILE_ENTRY, size: (await stat(file)).size, sha256: ''}],
  }
}

/** Puts the replayed file where an extracted archive's database would be. */
export async function placeReplayed(file: string, dir: string): Promise<void> {
  await makeDirs(join(dir, 'db'))
  await rename(file, join(dir, SQLITE_FILE_ENTRY))
}
