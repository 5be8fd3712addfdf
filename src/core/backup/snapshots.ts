/**
 * The snapshot repository (docs/design/backup-repository.md): each backup is a snapshot whose files are lists of
 * content-addressed blobs, kept in packs that an index maps, so that a blob is stored once across every snapshot.
 *
 *   config.json            the repository's format, chunker and key-derivation parameters (written at first use)
 *   data/<2 hex>/<pack>    packs: sealed blobs back to back (a pack's name is the SHA-256 of its bytes)
 *   index/<id>.json        which blob is where: pack, offset, length
 *   snapshots/<id>.json    the backup's manifest (readable without the passphrase, as an archive's sidecar is) and
 *                          its tree: every file with its blobs (sealed when the repository is encrypted)
 *
 * Pure: layout names, document shapes and checks, and the decisions of create (what is unchanged), verify (which
 * packs to read) and prune (which packs go, which are rewritten). Reading and writing is adapters/backup/snapshot-*.
 */
import {invalidManifest, type BackupManifest} from './format.js'

export const CONFIG_KEY = 'config.json'
export const SNAPSHOTS_DIR = 'snapshots'
export const INDEX_DIR = 'index'
export const DATA_DIR = 'data'
export const REPOSITORY_VERSION = 1
/** The file `fetch` gives for a snapshot in place of an archive path (it names the repository and the snapshot). */
export const SNAPSHOT_HANDLE_SUFFIX = '.mlflowctl-snapshot.json'

/** Which kind of backup `backup create` writes: snapshots in this repository, or one self-contained archive. */
export type RepositoryFormat = 'snapshot' | 'archive'

export interface ChunkerParams {
  min: number
  avg: number
  max: number
}

/** 64 KiB–2 MiB, 256 KiB on average: a database night that touches 1% of pages stores about that much again. */
export const DEFAULT_CHUNKER: ChunkerParams = {min: 64 * 1024, avg: 256 * 1024, max: 2 * 1024 * 1024}
/** Packs are uploaded at about this size (restic's default): few objects, and little waste when one is rewritten. */
export const PACK_TARGET_BYTES = 16 * 1024 * 1024

export interface KeyParams {
  kdf: 'scrypt'
  N: number
  r: number
  p: number
  salt: string
  /** A known text sealed with the key: a wrong passphrase is told apart from damaged data. */
  check: string
}

export interface RepositoryConfig {
  repository: 'mlflowctl'
  version: number
  /** The format `backup create` writes here unless --format says otherwise: recorded at first use. */
  format: RepositoryFormat
  createdAt: string
  chunker: ChunkerParams
  encryption?: KeyParams
}

export interface SnapshotFile {
  path: string
  size: number
  sha256: string
  blobs: string[]
  /** What the source said of the file (mtime, ETag, generation): the next backup rereads it only when it changed. */
  version?: string
}

export interface SnapshotTree {
  /** The SHA-256 of the manifest's JSON: a manifest changed in the plaintext listing is caught on read. */
  manifestSha256: string
  files: SnapshotFile[]
  /** The source database's state as the next backup compares it (a SQLite file's and its WAL's size and mtime). */
  databaseState?: string
}

export interface SnapshotStats {
  filesNew: number
  filesUnchanged: number
  bytesRead: number
  blobsAdded: number
  /** Bytes this snapshot added to the repository (packs, index and the snapshot itself). */
  bytesAdded: number
  /** The snapshot whose unchanged files were referenced without being read. */
  parent?: string
}

export interface SnapshotDocument {
  kind: 'mlflowctl-snapshot'
  version: number
  manifest: BackupManifest
  stats: SnapshotStats
  /** Plain, or sealed with the repository key (base64) when the repository is encrypted. */
  tree: SnapshotTree | {sealed: string}
}

/** One index entry: blob ID, offset and stored length in its pack, and its length once opened. */
export type IndexedBlob = [id: string, offset: number, length: number, rawLength: number]

export interface IndexPack {
  id: string
  size: number
  blobs: IndexedBlob[]
}

export interface IndexDocument {
  version: number
  packs: IndexPack[]
}

export const packKey = (id: string) => `${DATA_DIR}/${id.slice(0, 2)}/${id}`
export const snapshotKey = (id: string) => `${SNAPSHOTS_DIR}/${id}.json`
export const indexKey = (id: string) => `${INDEX_DIR}/${id}.json`
export const packIdOf = (key: string) => (/^data\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(key) ?? [])[1]

const HEX64 = /^[0-9a-f]{64}$/

/** The reason a snapshot document is unusable, or undefined. Pure. */
export function invalidSnapshot(value: unknown, id: string): string | undefined {
  const doc = value as Partial<SnapshotDocument> | null
  if (!doc || typeof doc !== 'object' || doc.kind !== 'mlflowctl-snapshot') return 'it is not an mlflowctl snapshot'
  if (doc.version !== REPOSITORY_VERSION) return `snapshot version ${String(doc.version)} is not supported`
  const manifest = invalidManifest(doc.manifest)
  if (manifest) return manifest
  if (doc.manifest!.id !== id) return `it names backup ${doc.manifest!.id}, not ${id}`
  if (!doc.tree || typeof doc.tree !== 'object') return 'it has no tree'
  return undefined
}

/** The reason a tree is unusable (files that differ from the manifest, malformed blob IDs), or undefined. Pure. */
export function invalidTree(tree: SnapshotTree, manifest: BackupManifest, manifestSha256: string): string | undefined {
  if (tree.manifestSha256 !== manifestSha256) return 'its manifest was changed since the snapshot was written'
  if (!Array.isArray(tree.files)) return 'its tree lists no files'
  const listed = new Map(manifest.files.map((file) => [file.path, file]))
  if (tree.files.length !== listed.size) return 'its tree and its manifest list different files'
  for (const file of tree.files) {
    const entry = listed.get(file.path)
    if (!entry || entry.size !== file.size || entry.sha256 !== file.sha256)
      return `${file.path} differs between its tree and its manifest`
    if (!Array.isArray(file.blobs) || file.blobs.some((blob) => !HEX64.test(blob)))
      return `${file.path} lists a malformed blob ID`
  }
  return undefined
}

/** The reason a repository config is unusable, or undefined. Pure. */
export function invalidConfig(value: unknown): string | undefined {
  const config = value as Partial<RepositoryConfig> | null
  if (!config || config.repository !== 'mlflowctl') return 'config.json is not an mlflowctl repository config'
  if (config.version !== REPOSITORY_VERSION)
    return `repository version ${String(config.version)} is not supported (this mlflowctl reads version ${REPOSITORY_VERSION})`
  if (config.format !== 'snapshot' && config.format !== 'archive') return `format ${String(config.format)} is unknown`
  const chunker = config.chunker
  if (!chunker || !(chunker.min > 0 && chunker.min < chunker.avg && chunker.avg < chunker.max))
    return 'config.json has invalid chunker parameters'
  return undefined
}

/**
 * Whether a file can be referenced from the parent snapshot without being read: same path, size and version (a
 * directory's mtime, an object's ETag or generation). A source that reports no version is always read. Pure.
 */
export function unchangedInParent(
  parent: Map<string, SnapshotFile> | undefined,
  path: string,
  size: number,
  version: string | undefined,
): SnapshotFile | undefined {
  const before = parent?.get(path)
  return before && version !== undefined && before.version === version && before.size === size ? before : undefined
}

export interface PackUse {
  id: string
  size: number
  /** Stored bytes of blobs a kept snapshot needs. */
  usedBytes: number
  blobs: IndexedBlob[]
}

export interface GcPlan {
  /** Packs no kept snapshot needs a blob of. */
  remove: string[]
  /** Packs partly needed: their needed blobs are copied into new packs, then they go. */
  repack: PackUse[]
  /** Packs in the repository that no index lists (a killed create's or prune's): removed. */
  unindexed: string[]
  keptBytes: number
  freedBytes: number
}

/**
 * What prune does with the data: packs nothing needs go; packs in which more than `maxUnusedShare` of the bytes is
 * unneeded are rewritten; packs that no index lists are a killed run's and go. A blob listed in two packs (a
 * killed prune's repack) is taken from the first that exists. Pure.
 */
export function planDataGc(
  packs: IndexPack[],
  needed: Set<string>,
  storedPacks: Map<string, number>,
  maxUnusedShare = 0.05,
): GcPlan {
  const seen = new Set<string>()
  const uses: PackUse[] = []
  const indexed = new Set<string>()
  for (const pack of packs) {
    if (indexed.has(pack.id) || !storedPacks.has(pack.id)) continue
    indexed.add(pack.id)
    const blobs = pack.blobs.filter(([id]) => needed.has(id) && !seen.has(id))
    for (const [id] of blobs) seen.add(id)
    uses.push({id: pack.id, size: pack.size, usedBytes: blobs.reduce((sum, blob) => sum + blob[2], 0), blobs})
  }
  const remove = uses.filter((use) => use.blobs.length === 0).map((use) => use.id)
  const repack = uses.filter((use) => use.blobs.length > 0 && use.size - use.usedBytes > use.size * maxUnusedShare)
  const unindexed = [...storedPacks.keys()].filter((id) => !indexed.has(id))
  const gone = new Set([...remove, ...repack.map((use) => use.id), ...unindexed])
  const freedBytes = [...gone].reduce((sum, id) => sum + (storedPacks.get(id) ?? 0), 0)
  const keptBytes = [...storedPacks].filter(([id]) => !gone.has(id)).reduce((sum, [, size]) => sum + size, 0)
  return {remove, repack, unindexed, keptBytes, freedBytes}
}

/** Blob IDs a snapshot needs that no index entry (in a pack that exists) provides. Pure. */
export function missingBlobs(files: SnapshotFile[], located: Set<string>): string[] {
  const missing = new Set<string>()
  for (const file of files) for (const blob of file.blobs) if (!located.has(blob)) missing.add(blob)
  return [...missing]
}

/**
 * `--read-data-subset N%`: which packs to read, about N% of them, chosen by `random` (restic picks at random too,
 * so that repeated runs cover the repository). Pure given `random`.
 * @throws Error when the percentage is not in (0, 100]
 */
export function choosePackSubset(packs: string[], percent: number, random: () => number): string[] {
  if (!(percent > 0 && percent <= 100)) throw new Error(`a subset of ${percent}% is not in (0, 100]`)
  const count = Math.max(1, Math.ceil((packs.length * percent) / 100))
  const shuffled = [...packs]
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]
  }
  return shuffled.slice(0, Math.min(count, packs.length)).sort()
}

/** `--read-data-subset`: "10%" or "10" → 10. @returns undefined when it is not a percentage. Pure. */
export function parseSubset(raw: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)%?$/.exec(raw.trim())
  const value = match ? Number(match[1]) : Number.NaN
  return value > 0 && value <= 100 ? value : undefined
}
