// Backup archives: written as a stream (tar-stream → gzip → file), entry by entry, hashing as they pass,
// to NAME.partial, fsynced, made private (0600) and renamed only when complete; read back as a stream
// that refuses unsafe entries and compares every byte with the manifest.
import {createHash} from 'node:crypto'
import {createReadStream, createWriteStream} from 'node:fs'
import {chmod, open, readFile, rename, rm, stat} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import * as tarStream from 'tar-stream'

import {
  ARCHIVE_SUFFIX,
  MANIFEST_ENTRY,
  compareRowCounts,
  compareSqliteRowCounts,
  SQLITE_FILE_ENTRY,
  compareWithManifest,
  describeProblem,
  invalidManifest,
  sameManifest,
  unexpectedEntry,
  unsafeEntryName,
  type BackupFileEntry,
  type BackupManifest,
} from '../../core/backup/format.js'
import {CheckFailedError, ExternalError, MlflowctlError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {fsFailure} from '../fs/safe-fs.js'
import {parallelGzip} from '../fs/parallel-gzip.js'
import {decryptedStream, encryptStream, isEncrypted} from './crypto.js'
import {describeSqliteSnapshot} from './sqlite-source.js'
import {isSnapshotHandle, readSnapshotBackup, snapshotManifest} from './snapshot-backup.js'

export interface ArchiveSource {
  /** Name inside the archive (db/…, artifacts/…). */
  name: string
  /** The file on disk whose bytes go in. */
  file: string
}

/** Writes the archive; `finish` turns the list of written entries into the manifest. Returns its size. */
export async function writeBackupArchive(
  output: string,
  sources: AsyncIterable<ArchiveSource> | Iterable<ArchiveSource>,
  finish: (files: BackupFileEntry[]) => BackupManifest,
  passphrase?: string,
): Promise<{bytes: number; manifest: BackupManifest}> {
  const partial = `${output}.partial`
  const pack = tarStream.pack()
  const out = createWriteStream(partial, {mode: 0o600})
  // Both cores compress (independent gzip members); already-compressed artifacts are stored, not recompressed.
  const written = passphrase
    ? pipeline(pack, parallelGzip(), encryptStream(passphrase), out)
    : pipeline(pack, parallelGzip(), out)
  const files: BackupFileEntry[] = []
  const names = new Set<string>()
  try {
    for await (const source of sources) {
      const unsafe = unsafeEntryName(source.name)
      if (unsafe) throw new Error(`refusing to write ${source.name}: it ${unsafe}`)
      // Two entries of one name would make an archive that verify and restore refuse forever.
      if (names.has(source.name)) throw new Error(`refusing to write ${source.name} twice (from ${source.file})`)
      names.add(source.name)
      const {size} = await stat(source.file)
      const hash = createHash('sha256')
      let done!: (error?: Error | null) => void
      const finished = new Promise<void>((resolve, reject) => (done = (error) => (error ? reject(error) : resolve())))
      const entry = pack.entry({name: source.name, size, mode: 0o600, mtime: new Date(0), type: 'file'}, (error) =>
        done(error),
      ) as unknown as NodeJS.WritableStream
      let seen = 0
      for await (const chunk of createReadStream(source.file, {end: size - 1 < 0 ? undefined : size - 1})) {
        seen += (chunk as Buffer).length
        hash.update(chunk as Buffer)
        if (!entry.write(chunk as Buffer)) await new Promise((resolve) => entry.once('drain', () => resolve(undefined)))
      }
      // A file that grew or shrank while read would corrupt the tar: fail instead.
      if (seen !== size) throw new Error(`${source.file} changed size while it was read (${size} → ${seen} bytes)`)
      entry.end()
      await finished
      files.push({path: source.name, size, sha256: hash.digest('hex')})
      faultPoint('create:archive-entry')
    }
    const manifest = finish(files)
    pack.entry({name: MANIFEST_ENTRY, mode: 0o600, mtime: new Date(0)}, `${JSON.stringify(manifest, null, 2)}\n`)
    pack.finalize()
    await written
    const handle = await open(partial, 'r+')
    await handle.sync()
    await handle.close()
    await chmod(partial, 0o600)
    faultPoint('create:archive-synced')
    await rename(partial, output)
    faultPoint('create:archive-renamed')
    return {bytes: (await stat(output)).size, manifest}
  } catch (error) {
    pack.destroy()
    await written.catch(() => undefined)
    await rm(partial, {force: true})
    if ((error as NodeJS.ErrnoException).code) throw fsFailure(error, 'write', output)
    throw new ExternalError('BACKUP_WRITE_FAILED', `Cannot write ${output}: ${(error as Error).message}.`, {
      cause: error,
    })
  }
}

/** The manifest is read into memory; a real one is a few hundred bytes per file. */
const MAX_MANIFEST_BYTES = 256 * 1024 * 1024

/** A table's rows: db/<table>.jsonl (one JSON array per line) or db/<table>.copy (COPY text: one row per line). */
export const TABLE_FILE = /^db\/[^/]+\.(jsonl|copy)$/

export function newlines(chunk: Buffer): number {
  let count = 0
  for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) count++
  return count
}

export interface ReadOptions {
  /** For encrypted archives (AES-256-GCM). */
  passphrase?: string
  /** Called for each verified-safe entry's bytes (restore extracts here); the archive is fully checked only at the end. */
  onEntry?: (name: string, data: AsyncIterable<Buffer>) => Promise<void>
  /** The manifest the archive must carry: each entry is checked against it (listed, same size) before onEntry. */
  expected?: BackupManifest
  /**
   * A private directory where a format 2 database entry is copied while it is read, so that its rows can be counted
   * against the manifest (the table files of format 1 are counted as they stream). Without it, format 2's counts
   * are checked at restore and by verify --deep.
   */
  sqliteScratch?: string
}

/** The listing sidecar beside a repository archive (ID.manifest.json), when there is a valid one. Reads only. */
export async function readExpectedManifest(archive: string): Promise<BackupManifest | undefined> {
  if (isSnapshotHandle(archive)) return snapshotManifest(archive)
  if (!basename(archive).endsWith(ARCHIVE_SUFFIX)) return undefined
  const id = basename(archive).slice(0, -ARCHIVE_SUFFIX.length)
  try {
    const manifest = JSON.parse(await readFile(join(dirname(archive), `${id}.manifest.json`), 'utf8')) as BackupManifest
    return invalidManifest(manifest) || manifest.id !== id ? undefined : manifest
  } catch {
    return undefined
  }
}

/**
 * Reads the whole archive, checking entry names and types (regular files only: no symlinks, hard links
 * or devices), the manifest's shape, and every entry's size and SHA-256 against it.
 * @throws CheckFailedError BACKUP_CORRUPT with the specific reason
 */
export async function verifyBackupArchive(file: string, options: ReadOptions = {}): Promise<BackupManifest> {
  if (isSnapshotHandle(file)) return readSnapshotBackup(file, options)
  const corrupt = (why: string) =>
    new CheckFailedError('BACKUP_CORRUPT', `${file}: ${why}.`, {
      suggestions: ['Use another backup (mlflowctl backup list), and check the storage that holds this one.'],
    })
  const extract = tarStream.extract()
  const seen = new Map<string, {size: number; sha256: string}>()
  const linesByEntry = new Map<string, number>()
  let sqliteCopy: string | undefined
  let manifestText: string | undefined
  let rejection: Error | undefined
  let entries = 0
  extract.on('entry', (header, stream, next) => {
    // Destroying the extractor destroys the entry stream too: its error is the one already recorded.
    stream.on('error', () => undefined)
    void (async () => {
      const unsafe = unsafeEntryName(header.name)
      // An ordinary tar.gz (its first entry outside db/, artifacts/ and the manifest) is not a damaged backup.
      const outsideLayout = unsafe === 'is not under db/ or artifacts/' || (header.type === 'directory' && !unsafe)
      if (entries++ === 0 && outsideLayout)
        throw new CheckFailedError(
          'NOT_A_BACKUP',
          `${file} is not an mlflowctl backup: its first entry is ${header.name} (a backup holds manifest.json, db/ and artifacts/ only).`,
          {suggestions: ['Pass a backup that mlflowctl backup create wrote (mlflowctl backup list shows them).']},
        )
      if (header.type !== 'file')
        throw corrupt(`entry ${header.name} is a ${header.type}, and a backup holds regular files only`)
      if (unsafe) throw corrupt(`entry ${header.name} ${unsafe}`)
      if (seen.has(header.name) || (header.name === MANIFEST_ENTRY && manifestText !== undefined))
        throw corrupt(`entry ${header.name} appears twice`)
      if (header.name === MANIFEST_ENTRY && (header.size ?? 0) > MAX_MANIFEST_BYTES)
        throw corrupt(`manifest.json declares ${header.size} bytes, more than a manifest can need`)
      const unexpected =
        options.expected && header.name !== MANIFEST_ENTRY
          ? unexpectedEntry(options.expected, header.name, header.size ?? 0)
          : undefined
      if (unexpected) throw corrupt(unexpected)
      const hash = createHash('sha256')
      const isTableFile = TABLE_FILE.test(header.name)
      let size = 0
      let lines = 0
      const chunks: Buffer[] = []
      const tee = async function* () {
        for await (const chunk of stream) {
          size += (chunk as Buffer).length
          hash.update(chunk as Buffer)
          if (isTableFile) lines += newlines(chunk as Buffer)
          if (header.name === MANIFEST_ENTRY) chunks.push(chunk as Buffer)
          yield chunk as Buffer
        }
      }
      if (options.onEntry && header.name !== MANIFEST_ENTRY) await options.onEntry(header.name, tee())
      else if (options.sqliteScratch && header.name === SQLITE_FILE_ENTRY && !sqliteCopy) {
        sqliteCopy = join(options.sqliteScratch, 'verify-rows.db')
        await pipeline(tee(), createWriteStream(sqliteCopy, {mode: 0o600}))
      } else for await (const _ of tee());
      if (header.name === MANIFEST_ENTRY) manifestText = Buffer.concat(chunks).toString('utf8')
      else seen.set(header.name, {size, sha256: hash.digest('hex')})
      if (isTableFile) linesByEntry.set(header.name, lines)
    })().then(
      () => next(),
      (error: Error) => {
        rejection = error
        stream.resume()
        extract.destroy(error)
      },
    )
  })
  const kind = (await stat(file).catch(() => undefined))?.isDirectory() ? 'dir' : 'file'
  if (kind === 'dir')
    throw new CheckFailedError('NOT_A_BACKUP', `${file} is a directory, not a backup archive.`, {
      suggestions: [
        `Name an archive in it (ID${ARCHIVE_SUFFIX}), or pass its ID with --repo ${file} (mlflowctl backup list --repo ${file} shows them).`,
      ],
    })
  const encrypted = await isEncrypted(file).catch(() => false)
  // The header's own refusals (no passphrase, a truncated file, key-derivation parameters mlflowctl never writes)
  // come before any byte is decrypted, and say what they are.
  const input = encrypted ? await decryptedStream(file, options.passphrase) : createReadStream(file)
  try {
    await pipeline(input, createGunzip(), extract)
  } catch (error) {
    // Until the GCM tag checks out, every byte is suspect: a wrong key or a changed byte shows up as
    // garbage to gunzip or tar, whichever notices first. Say what it really is.
    if (encrypted)
      throw new CheckFailedError(
        'BACKUP_DECRYPT_FAILED',
        `${file}: the passphrase is wrong, or the archive was changed (authentication failed).`,
        {suggestions: ['Check the passphrase; if it is right, use another backup.']},
      )
    // An entry's reader may be the first to see gunzip's or tar's error: it is then the recorded rejection, and is
    // classified like any other read error (a raw zlib error would otherwise surface as "a bug").
    const cause = rejection ?? error
    if (cause instanceof MlflowctlError) throw cause
    const code = (cause as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new ExternalError('BACKUP_NOT_FOUND', `${file} does not exist.`)
    if (code === 'Z_BUF_ERROR' || /unexpected end of file/i.test((cause as Error).message))
      throw corrupt('the archive is truncated (its compressed data ends too early; a damaged byte can also look so)')
    if (code === 'Z_DATA_ERROR') throw corrupt('the compressed data is damaged (or this is not a gzip file)')
    if (/invalid tar header|unexpected end of data/i.test((cause as Error).message))
      throw corrupt('the archive structure is damaged (an invalid tar header)')
    if (!(cause as NodeJS.ErrnoException).syscall) throw corrupt(`cannot read it: ${(cause as Error).message}`)
    throw cause
  }
  if (rejection) throw rejection
  if (manifestText === undefined) throw corrupt('it has no manifest.json (an incomplete or foreign archive)')
  let manifest: BackupManifest
  try {
    manifest = JSON.parse(manifestText) as BackupManifest
  } catch {
    throw corrupt('manifest.json is not valid JSON')
  }
  const invalid = invalidManifest(manifest)
  if (invalid) throw corrupt(invalid)
  await checkAgainstManifest(manifest, {seen, linesByEntry, sqliteCopy}, corrupt)
  if (options.expected && !sameManifest(manifest, options.expected))
    throw corrupt('its manifest differs from the listing sidecar beside it (one of them was changed)')
  return manifest
}

/**
 * What was read against the manifest: every entry's size and SHA-256, the lines of table files, and the rows of a
 * SQLite copy taken while it streamed (removed here). Archives and snapshots are held to the same checks.
 * @throws what `corrupt` makes of the first problems found
 */
export async function checkAgainstManifest(
  manifest: BackupManifest,
  read: {seen: Map<string, {size: number; sha256: string}>; linesByEntry: Map<string, number>; sqliteCopy?: string},
  corrupt: (why: string) => Error,
): Promise<void> {
  const problems = [...compareWithManifest(manifest, read.seen), ...compareRowCounts(manifest, read.linesByEntry)]
  if (read.sqliteCopy && problems.length === 0) {
    try {
      problems.push(...compareSqliteRowCounts(manifest, describeSqliteSnapshot(read.sqliteCopy).rowCounts))
    } catch (error) {
      throw corrupt(`${SQLITE_FILE_ENTRY} cannot be read as a SQLite database (${(error as Error).message})`)
    } finally {
      await rm(read.sqliteCopy, {force: true})
    }
  }
  if (problems.length > 0) throw corrupt(problems.map(describeProblem).join('; '))
}
