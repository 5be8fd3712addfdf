// The snapshot side of a backup repository (core/backup/snapshots.ts has the layout): one implementation over the
// Store interface, so that a directory, s3://, wasbs:// and gs:// repository behave the same. Writes go packs first,
// then the index that maps them, then the snapshot that refers to them: a kill at any point leaves only data that no
// listed snapshot needs, which prune removes. Prune writes new packs and a new index before it deletes anything.
import {createHash, randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, open, rm, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'

import {chunkStream} from '../../core/backup/chunker.js'
import type {SnapshotEntry} from '../../core/backup/create.js'
import type {BackupFileEntry, BackupManifest} from '../../core/backup/format.js'
import {
  CONFIG_KEY,
  DEFAULT_CHUNKER,
  INDEX_DIR,
  PACK_TARGET_BYTES,
  REPOSITORY_VERSION,
  SNAPSHOTS_DIR,
  choosePackSubset,
  indexKey,
  invalidConfig,
  invalidSnapshot,
  invalidTree,
  missingBlobs,
  packIdOf,
  packKey,
  planDataGc,
  snapshotKey,
  unchangedInParent,
  type GcPlan,
  type IndexDocument,
  type IndexPack,
  type IndexedBlob,
  type RepositoryConfig,
  type RepositoryFormat,
  type SnapshotDocument,
  type SnapshotFile,
  type SnapshotStats,
  type SnapshotTree,
} from '../../core/backup/snapshots.js'
import {CheckFailedError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {isNotFound, type Store} from '../store/index.js'
import {blobId, newKeys, seal, sealJson, unlockKeys, unseal, unsealJson, type RepositoryKeys} from './blob-codec.js'

/** Where a blob is: its pack, offset and stored length, and its length once opened. */
export interface BlobLocation {
  pack: string
  offset: number
  length: number
  rawLength: number
}

export interface LoadedIndex {
  blobs: Map<string, BlobLocation>
  packs: IndexPack[]
  keys: string[]
}

export interface OpenedRepository {
  config: RepositoryConfig
  keys: RepositoryKeys | undefined
}

const sha256Of = (text: string) => createHash('sha256').update(text).digest('hex')
const randomName = () => randomBytes(32).toString('hex')
/** Files downloaded ahead of the one being chunked (object stores): parallel, and bounded. */
const DOWNLOADS_AHEAD = 8
const SEALS_IN_FLIGHT = 4
const UPLOADS_IN_FLIGHT = 2
/** Blobs read ahead of the one a restore is writing. */
const BLOBS_AHEAD = 8

const corruptRepo = (where: string, why: string) =>
  new CheckFailedError('BACKUP_CORRUPT', `${where}: ${why}.`, {
    suggestions: ['Run mlflowctl backup verify --read-data on the repository, and restore another snapshot.'],
  })

export class SnapshotRepository {
  constructor(
    readonly store: Store,
    private readonly scratchRoot: string,
  ) {}

  get display(): string {
    return this.store.display
  }

  private async getOptional(key: string): Promise<Buffer | undefined> {
    try {
      return await this.store.get(key)
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  /** The repository's config, or undefined before its first use. @throws CheckFailedError BACKUP_CORRUPT */
  async config(): Promise<RepositoryConfig | undefined> {
    const raw = await this.getOptional(CONFIG_KEY)
    if (!raw) return undefined
    let config: RepositoryConfig
    try {
      config = JSON.parse(raw.toString('utf8')) as RepositoryConfig
    } catch {
      throw corruptRepo(this.display, 'config.json is not valid JSON')
    }
    const invalid = invalidConfig(config)
    if (invalid) throw corruptRepo(this.display, invalid)
    return config
  }

  /**
   * The config, written at first use with `format` (and, with a passphrase, the key parameters). A config written
   * meanwhile by another run wins (created only if absent).
   */
  async initialise(format: RepositoryFormat, passphrase: string | undefined, now: Date): Promise<RepositoryConfig> {
    const existing = await this.config()
    if (existing) return existing
    const config: RepositoryConfig = {
      repository: 'mlflowctl',
      version: REPOSITORY_VERSION,
      format,
      createdAt: now.toISOString(),
      chunker: DEFAULT_CHUNKER,
      ...(passphrase ? {encryption: (await newKeys(passphrase)).params} : {}),
    }
    const created = await this.store.putIfAbsent(CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`))
    return created ? config : ((await this.config()) ?? config)
  }

  /** The config and keys for reading or writing snapshots. @throws CheckFailedError when it has none */
  async open(passphrase: string | undefined): Promise<OpenedRepository> {
    const config = await this.config()
    if (!config) throw corruptRepo(this.display, 'it holds snapshots but no config.json')
    const keys = config.encryption ? await unlockKeys(this.display, config.encryption, passphrase) : undefined
    return {config, keys}
  }

  async documentIds(): Promise<string[]> {
    const ids: string[] = []
    for await (const entry of this.store.entries(`${SNAPSHOTS_DIR}/`)) {
      const match = /^snapshots\/([^/]+)\.json$/.exec(entry.key)
      if (match) ids.push(match[1])
    }
    return ids.sort()
  }

  /** A snapshot's document, undefined when it does not exist. @throws CheckFailedError BACKUP_CORRUPT */
  async document(id: string): Promise<SnapshotDocument | undefined> {
    const raw = await this.getOptional(snapshotKey(id))
    if (!raw) return undefined
    let doc: SnapshotDocument
    try {
      doc = JSON.parse(raw.toString('utf8')) as SnapshotDocument
    } catch {
      throw corruptRepo(`${this.display}/${snapshotKey(id)}`, 'it is not valid JSON')
    }
    const invalid = invalidSnapshot(doc, id)
    if (invalid) throw corruptRepo(`${this.display}/${snapshotKey(id)}`, invalid)
    return doc
  }

  /** Every snapshot whose document is sound (a damaged one is named through `onDamaged`), oldest first. */
  async documents(onDamaged: (message: string) => void = () => undefined): Promise<SnapshotDocument[]> {
    const docs: SnapshotDocument[] = []
    for (const id of await this.documentIds()) {
      try {
        const doc = await this.document(id)
        if (doc) docs.push(doc)
      } catch (error) {
        onDamaged((error as Error).message)
      }
    }
    return docs
  }

  /** The snapshot's tree, opened and checked against its manifest. @throws CheckFailedError BACKUP_CORRUPT */
  async tree(doc: SnapshotDocument, keys: RepositoryKeys | undefined): Promise<SnapshotTree> {
    const where = `${this.display}/${snapshotKey(doc.manifest.id)}`
    const sealed = 'sealed' in doc.tree
    if (sealed !== Boolean(keys))
      throw corruptRepo(
        where,
        sealed ? 'its tree is sealed in a plain repository' : 'its tree is not sealed in an encrypted repository',
      )
    const tree = sealed
      ? await unsealJson<SnapshotTree>(
          Buffer.from((doc.tree as {sealed: string}).sealed, 'base64'),
          keys,
          `${where} (tree)`,
        )
      : (doc.tree as SnapshotTree)
    const invalid = invalidTree(tree, doc.manifest, sha256Of(JSON.stringify(doc.manifest)))
    if (invalid) throw corruptRepo(where, invalid)
    return tree
  }

  /** Every index file, merged: a blob listed twice (a killed prune's repack) keeps its first pack that exists. */
  async loadIndex(keys: RepositoryKeys | undefined, stored?: Map<string, number>): Promise<LoadedIndex> {
    const blobs = new Map<string, BlobLocation>()
    const packs: IndexPack[] = []
    const names: string[] = []
    for await (const entry of this.store.entries(`${INDEX_DIR}/`))
      if (entry.key.endsWith('.json')) names.push(entry.key)
    names.sort()
    for (const name of names) {
      const raw = await this.getOptional(name)
      if (!raw) continue
      const doc = await unsealJson<IndexDocument>(raw, keys, `${this.display}/${name}`)
      if (doc.version !== REPOSITORY_VERSION || !Array.isArray(doc.packs))
        throw corruptRepo(`${this.display}/${name}`, 'it is not an index')
      for (const pack of doc.packs) {
        if (stored && !stored.has(pack.id)) continue
        packs.push(pack)
        for (const [id, offset, length, rawLength] of pack.blobs)
          if (!blobs.has(id)) blobs.set(id, {pack: pack.id, offset, length, rawLength})
      }
    }
    return {blobs, packs, keys: names}
  }

  /** Every pack in the repository with its size. */
  async storedPacks(): Promise<Map<string, number>> {
    const packs = new Map<string, number>()
    for await (const entry of this.store.entries('data/')) {
      const id = packIdOf(entry.key)
      if (id) packs.set(id, entry.size)
    }
    return packs
  }

  /** The newest snapshot of a source (by its location), with its files by path: the parent of the next one. */
  async parentOf(
    location: string,
    opened: OpenedRepository,
  ): Promise<{doc: SnapshotDocument; tree: SnapshotTree} | undefined> {
    const docs = (await this.documents()).filter((doc) => doc.manifest.source.location === location)
    const doc = docs.sort((a, b) => a.manifest.createdAt.localeCompare(b.manifest.createdAt)).at(-1)
    if (!doc) return undefined
    try {
      return {doc, tree: await this.tree(doc, opened.keys)}
    } catch {
      return undefined // a damaged parent is not a reason to fail tonight's backup: every file is read instead
    }
  }

  /**
   * Writes one snapshot: each file's chunks that the repository lacks are sealed and packed, packs uploaded (bounded,
   * in parallel), then the index of the new packs, then the snapshot document, which makes it listed.
   */
  async writeSnapshot(options: {
    opened: OpenedRepository
    entries: AsyncIterable<SnapshotEntry>
    parent?: {doc: SnapshotDocument; tree: SnapshotTree}
    forceRead: boolean
    databaseState?: string
    finish: (files: BackupFileEntry[]) => BackupManifest
  }): Promise<{manifest: BackupManifest; stats: SnapshotStats; key: string}> {
    const {opened} = options
    // The index is read only when a file is read: a night with nothing changed lists and reads no index or pack.
    let index: Promise<Map<string, BlobLocation>> | undefined
    const known = () =>
      (index ??= this.storedPacks().then(async (stored) => (await this.loadIndex(opened.keys, stored)).blobs))
    const writer = new PackWriter(this.store, opened.keys, known)
    const parentFiles = options.forceRead
      ? undefined
      : new Map(options.parent?.tree.files.map((file) => [file.path, file]))
    const files: SnapshotFile[] = []
    const stats: SnapshotStats = {
      filesNew: 0,
      filesUnchanged: 0,
      bytesRead: 0,
      blobsAdded: 0,
      bytesAdded: 0,
      ...(options.parent ? {parent: options.parent.doc.manifest.id} : {}),
    }
    const scratch = join(this.scratchRoot, `download-${randomName().slice(0, 12)}`)
    let downloads = 0
    let scratchReady: Promise<unknown> | undefined
    const prepare = async (
      entry: SnapshotEntry,
    ): Promise<{entry: SnapshotEntry; reuse?: SnapshotFile; file?: string; temporary?: boolean}> => {
      const reuse =
        entry.size !== undefined ? unchangedInParent(parentFiles, entry.name, entry.size, entry.version) : undefined
      if (reuse) return {entry, reuse}
      if (entry.read || entry.file) return {entry, file: entry.file}
      if (!entry.download) throw new Error(`${entry.name} has neither a file nor a download, and no unchanged parent`)
      const file = join(scratch, String(downloads++))
      scratchReady ??= mkdir(scratch, {recursive: true, mode: 0o700})
      await scratchReady
      await entry.download(file)
      return {entry, file, temporary: true}
    }
    const names = new Set<string>()
    const ahead: Array<Promise<Awaited<ReturnType<typeof prepare>>>> = []
    const take = async () => {
      const prepared = await ahead.shift()!
      if (prepared.reuse) {
        files.push({...prepared.reuse, version: prepared.entry.version})
        stats.filesUnchanged++
        return
      }
      const hash = createHash('sha256')
      const blobs: string[] = []
      let size = 0
      const input = prepared.entry.read?.() ?? createReadStream(prepared.file!, {highWaterMark: 4 * 1024 * 1024})
      for await (const chunk of chunkStream(input, opened.config.chunker)) {
        hash.update(chunk)
        size += chunk.length
        blobs.push(await writer.add(chunk))
      }
      if (prepared.temporary) await rm(prepared.file!, {force: true})
      stats.bytesRead += size
      stats.filesNew++
      files.push({
        path: prepared.entry.name,
        size,
        sha256: hash.digest('hex'),
        blobs,
        ...(prepared.entry.version !== undefined ? {version: prepared.entry.version} : {}),
      })
    }
    try {
      for await (const entry of options.entries) {
        if (names.has(entry.name)) throw new Error(`refusing to write ${entry.name} twice`)
        names.add(entry.name)
        const prepared = prepare(entry)
        prepared.catch(() => undefined) // awaited in order below; a failure surfaces there
        ahead.push(prepared)
        while (ahead.length >= DOWNLOADS_AHEAD) await take()
      }
      while (ahead.length > 0) await take()
      const written = await writer.finish()
      stats.blobsAdded = written.blobs
      stats.bytesAdded = written.bytes
      if (written.packs.length > 0) {
        const indexBody = await sealJson(
          {version: REPOSITORY_VERSION, packs: written.packs} satisfies IndexDocument,
          opened.keys,
        )
        faultPoint('create:packs-uploaded')
        await this.store.put(indexKey(randomName()), indexBody)
        stats.bytesAdded += indexBody.length
        faultPoint('create:index-written')
      }
    } finally {
      await Promise.allSettled(ahead)
      await rm(scratch, {recursive: true, force: true})
    }
    const manifest = options.finish(files.map(({path, size, sha256}) => ({path, size, sha256})))
    const tree: SnapshotTree = {
      manifestSha256: sha256Of(JSON.stringify(manifest)),
      files,
      ...(options.databaseState ? {databaseState: options.databaseState} : {}),
    }
    const doc: SnapshotDocument = {
      kind: 'mlflowctl-snapshot',
      version: REPOSITORY_VERSION,
      manifest,
      stats,
      tree: opened.keys ? {sealed: (await sealJson(tree, opened.keys)).toString('base64')} : tree,
    }
    // What the snapshot added counts its own document, whose length is known only once it is written out.
    stats.bytesAdded += Buffer.byteLength(`${JSON.stringify(doc)}\n`)
    await this.store.put(snapshotKey(manifest.id), Buffer.from(`${JSON.stringify(doc)}\n`))
    faultPoint('create:snapshot-written')
    return {manifest, stats, key: snapshotKey(manifest.id)}
  }

  /**
   * A file's bytes, blob by blob, read ahead in parallel. Each blob is opened (authenticated, in an encrypted
   * repository) but not hashed against its ID: the caller checks the whole file against the manifest's SHA-256, which
   * catches any changed byte for one hash pass instead of two.
   */
  async *readFile(
    file: SnapshotFile,
    index: LoadedIndex,
    keys: RepositoryKeys | undefined,
    packs: PackReader,
  ): AsyncIterable<Buffer> {
    const fetchBlob = async (id: string) => {
      const at = index.blobs.get(id)
      if (!at)
        throw corruptRepo(
          this.display,
          `${file.path} needs blob ${id.slice(0, 12)}, which no index lists (its data was lost)`,
        )
      const stored = await packs.read(at.pack, at.offset, at.length)
      return unseal(
        stored,
        keys,
        undefined,
        `${this.display}: blob ${id.slice(0, 12)} of ${file.path} (pack ${at.pack.slice(0, 12)})`,
      )
    }
    const pending: Array<Promise<Buffer>> = []
    let next = 0
    const fill = () => {
      while (pending.length < BLOBS_AHEAD && next < file.blobs.length) {
        const blob = fetchBlob(file.blobs[next++])
        blob.catch(() => undefined)
        pending.push(blob)
      }
    }
    fill()
    while (pending.length > 0) {
      const blob = await pending.shift()!
      fill()
      yield blob
    }
  }

  packReader(): PackReader {
    return new PackReader(this.store, this.scratchRoot)
  }

  async removeSnapshot(id: string): Promise<void> {
    await this.store.delete(snapshotKey(id)).catch((error) => (isNotFound(error) ? undefined : Promise.reject(error)))
  }

  /**
   * Quick check: every blob the snapshots need is in an index entry whose pack exists with the size the index
   * says. With `readPacks`, those packs are also read and every blob in them opened and checked against its ID.
   * Returns the problems found.
   */
  async check(
    docs: SnapshotDocument[],
    opened: OpenedRepository,
    readPacks: 'none' | 'all' | number,
    random: () => number = Math.random,
  ): Promise<{problems: string[]; packsRead: number; blobsChecked: number}> {
    const problems: string[] = []
    const stored = await this.storedPacks()
    const index = await this.loadIndex(opened.keys)
    for (const pack of index.packs) {
      const size = stored.get(pack.id)
      if (size !== undefined && size !== pack.size)
        problems.push(`pack ${pack.id.slice(0, 12)} has ${size} bytes, its index says ${pack.size}`)
    }
    const located = new Set([...index.blobs].filter(([, at]) => stored.get(at.pack) !== undefined).map(([id]) => id))
    const needed = new Set<string>()
    for (const doc of docs) {
      let tree: SnapshotTree
      try {
        tree = await this.tree(doc, opened.keys)
      } catch (error) {
        problems.push((error as Error).message)
        continue
      }
      const missing = missingBlobs(tree.files, located)
      if (missing.length > 0)
        problems.push(
          `snapshot ${doc.manifest.id} needs ${missing.length} blobs whose data is missing (e.g. ${missing[0].slice(0, 12)})`,
        )
      for (const file of tree.files) for (const blob of file.blobs) needed.add(blob)
    }
    if (readPacks === 'none') return {problems, packsRead: 0, blobsChecked: 0}
    const usedPacks = [
      ...new Set(
        [...needed]
          .map((id) => index.blobs.get(id)?.pack)
          .filter((pack): pack is string => Boolean(pack && stored.has(pack))),
      ),
    ]
    const chosen = readPacks === 'all' ? usedPacks.sort() : choosePackSubset(usedPacks, readPacks, random)
    const reader = this.packReader()
    let blobsChecked = 0
    try {
      for (const packId of chosen) {
        const entries = index.packs.find((pack) => pack.id === packId)?.blobs ?? []
        for (const [id, offset, length] of entries) {
          try {
            await unseal(
              await reader.read(packId, offset, length),
              opened.keys,
              id,
              `pack ${packId.slice(0, 12)}: blob ${id.slice(0, 12)}`,
            )
            blobsChecked++
          } catch (error) {
            problems.push((error as Error).message)
          }
        }
      }
    } finally {
      await reader.close()
    }
    return {problems, packsRead: chosen.length, blobsChecked}
  }

  /**
   * Deletes the data no kept snapshot needs. New packs (the needed blobs of mostly-unneeded packs) and a new index
   * come first; then the old index files go, then the packs. A kill between any two steps leaves every listed
   * snapshot readable, and at worst data that the next prune removes.
   */
  async collectGarbage(opened: OpenedRepository): Promise<GcPlan & {repackedBlobs: number}> {
    const stored = await this.storedPacks()
    const index = await this.loadIndex(opened.keys)
    const needed = new Set<string>()
    for (const doc of await this.documents()) {
      const tree = await this.tree(doc, opened.keys) // a tree that cannot be read stops prune: its data stays
      for (const file of tree.files) for (const blob of file.blobs) needed.add(blob)
    }
    const plan = planDataGc(index.packs, needed, stored)
    const keptPacks = index.packs.filter(
      (pack, at, all) =>
        stored.has(pack.id) &&
        all.findIndex((p) => p.id === pack.id) === at &&
        !plan.remove.includes(pack.id) &&
        !plan.repack.some((use) => use.id === pack.id),
    )
    const reader = this.packReader()
    const writer = new PackWriter(this.store, opened.keys, async () => new Map())
    let repackedBlobs = 0
    try {
      for (const use of plan.repack) {
        for (const [id, offset, length, rawLength] of use.blobs) {
          writer.addStored(id, await reader.read(use.id, offset, length), rawLength)
          repackedBlobs++
        }
      }
    } finally {
      await reader.close()
    }
    const repacked = await writer.finish()
    faultPoint('prune:repacked')
    const touched = plan.remove.length + plan.repack.length + plan.unindexed.length > 0
    if (touched || index.keys.length > 1) {
      const body = await sealJson(
        {version: REPOSITORY_VERSION, packs: [...keptPacks, ...repacked.packs]} satisfies IndexDocument,
        opened.keys,
      )
      const newKey = indexKey(randomName())
      await this.store.put(newKey, body)
      faultPoint('prune:index-written')
      for (const key of index.keys)
        await this.store.delete(key).catch((error) => (isNotFound(error) ? undefined : Promise.reject(error)))
      faultPoint('prune:old-index-removed')
    }
    // Packs are named by their bytes, so a repack can write a pack that a killed prune already wrote (and that the
    // plan counts as unindexed): whatever the new index lists stays.
    const listed = new Set([...keptPacks, ...repacked.packs].map((pack) => pack.id))
    for (const id of [...plan.remove, ...plan.repack.map((use) => use.id), ...plan.unindexed]) {
      if (listed.has(id)) continue
      await this.store.delete(packKey(id)).catch((error) => (isNotFound(error) ? undefined : Promise.reject(error)))
      faultPoint('prune:pack-removed')
    }
    return {...plan, repackedBlobs}
  }
}

/** Collects sealed blobs into packs of about PACK_TARGET_BYTES and uploads each (bounded, in parallel). */
class PackWriter {
  private parts: Buffer[] = []
  private entries: IndexedBlob[] = []
  private size = 0
  private readonly sealing = new Set<Promise<void>>()
  private readonly uploading = new Set<Promise<void>>()
  private readonly pendingIds = new Set<string>()
  private failure: unknown
  readonly packs: IndexPack[] = []
  private blobs = 0
  private bytes = 0

  constructor(
    private readonly store: Store,
    private readonly keys: RepositoryKeys | undefined,
    private readonly known: () => Promise<Map<string, BlobLocation>>,
  ) {}

  /** Returns the chunk's blob ID; seals and packs it unless the repository (or this run) has it already. */
  async add(chunk: Buffer): Promise<string> {
    const id = blobId(chunk, this.keys)
    if ((await this.known()).has(id) || this.pendingIds.has(id)) return id
    this.pendingIds.add(id)
    while (this.sealing.size >= SEALS_IN_FLIGHT) await Promise.race(this.sealing)
    this.raise()
    const sealed: Promise<void> = seal(chunk, this.keys).then(
      (stored) => this.addStored(id, stored, chunk.length),
      (error) => {
        this.failure ??= error
      },
    )
    const tracked = sealed.finally(() => this.sealing.delete(tracked))
    this.sealing.add(tracked)
    while (this.uploading.size > UPLOADS_IN_FLIGHT) await Promise.race(this.uploading)
    this.raise()
    return id
  }

  /** A blob already in stored form (prune's repack). */
  addStored(id: string, stored: Buffer, rawLength: number): void {
    this.entries.push([id, this.size, stored.length, rawLength])
    this.parts.push(stored)
    this.size += stored.length
    this.blobs++
    if (this.size >= PACK_TARGET_BYTES) this.flush()
  }

  private raise(): void {
    if (this.failure) throw this.failure
  }

  private flush(): void {
    if (this.entries.length === 0) return
    const body = Buffer.concat(this.parts)
    const pack: IndexPack = {
      id: createHash('sha256').update(body).digest('hex'),
      size: body.length,
      blobs: this.entries,
    }
    this.parts = []
    this.entries = []
    this.size = 0
    const upload: Promise<void> = this.store.put(packKey(pack.id), body).then(
      () => {
        this.packs.push(pack)
        this.bytes += body.length
        faultPoint('create:pack-uploaded')
      },
      (error) => {
        this.failure ??= error
      },
    )
    const tracked = upload.finally(() => this.uploading.delete(tracked))
    this.uploading.add(tracked)
  }

  /** Waits for every seal and upload; returns the packs written (for the index). */
  async finish(): Promise<{packs: IndexPack[]; blobs: number; bytes: number}> {
    await Promise.all(this.sealing)
    this.flush()
    await Promise.all(this.uploading)
    this.raise()
    return {packs: this.packs, blobs: this.blobs, bytes: this.bytes}
  }
}

/**
 * Reads byte ranges of packs: in place for a directory, else from whole packs downloaded to scratch space. A few
 * packs stay open (and downloaded); one is let go only when no read of it is in flight.
 */
export class PackReader {
  private readonly open = new Map<string, {file: Promise<{handle: FileHandle; path?: string}>; reads: number}>()
  private scratch: string | undefined

  constructor(
    private readonly store: Store,
    private readonly scratchRoot: string,
  ) {}

  private async openPack(pack: string): Promise<{handle: FileHandle; path?: string}> {
    const key = packKey(pack)
    const missing = (error: unknown) =>
      isNotFound(error)
        ? corruptRepo(this.store.display, `pack ${pack.slice(0, 12)} is missing (its data was lost)`)
        : error
    const local = this.store.localPath(key)
    if (local) return {handle: await open(local, 'r').catch((error) => Promise.reject(missing(error)))}
    this.scratch ??= join(this.scratchRoot, `packs-${randomName().slice(0, 12)}`)
    await mkdir(this.scratch, {recursive: true, mode: 0o700})
    const path = join(this.scratch, pack)
    await this.store.downloadFile(key, path).catch((error) => Promise.reject(missing(error)))
    return {handle: await open(path, 'r'), path}
  }

  /** Lets go of open packs no read is using, oldest first, until at most `keep` remain. */
  private evict(keep: number): void {
    for (const [pack, entry] of this.open) {
      if (this.open.size <= keep) return
      if (entry.reads > 0) continue
      this.open.delete(pack)
      void entry.file
        .then(async ({handle, path}) => {
          await handle.close()
          if (path) await rm(path, {force: true})
        })
        .catch(() => undefined)
    }
  }

  async read(pack: string, offset: number, length: number): Promise<Buffer> {
    let entry = this.open.get(pack)
    if (!entry) {
      this.evict(this.store.localPath(packKey(pack)) ? 16 : 6)
      entry = {file: this.openPack(pack), reads: 0}
      this.open.set(pack, entry)
    }
    entry.reads++
    try {
      const {handle} = await entry.file
      const buffer = Buffer.alloc(length)
      const {bytesRead} = await handle.read(buffer, 0, length, offset)
      if (bytesRead !== length)
        throw corruptRepo(this.store.display, `pack ${pack.slice(0, 12)} is shorter than its index says`)
      return buffer
    } catch (error) {
      if (this.open.get(pack) === entry && entry.reads === 1) this.open.delete(pack) // a failed open is not kept
      throw error
    } finally {
      entry.reads--
    }
  }

  async close(): Promise<void> {
    for (const entry of this.open.values()) await entry.file.then(({handle}) => handle.close()).catch(() => undefined)
    this.open.clear()
    if (this.scratch) await rm(this.scratch, {recursive: true, force: true})
  }
}
