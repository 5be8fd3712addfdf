// A snapshot as the rest of the tool reads a backup. `fetch` of a snapshot ID gives a small handle file in scratch
// space (which repository, which snapshot) in place of an archive path; verify, restore and deep verify pass it to
// verifyBackupArchive as they would an archive, and get the same checks: every entry's name, size and SHA-256
// against the manifest, row counts, and the expected manifest before a byte is written.
import {createHash} from 'node:crypto'
import {createWriteStream} from 'node:fs'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {
  SQLITE_FILE_ENTRY,
  sameManifest,
  unexpectedEntry,
  unsafeEntryName,
  type BackupManifest,
} from '../../core/backup/format.js'
import type {RepoEntry} from '../../core/backup/repository.js'
import {SNAPSHOT_HANDLE_SUFFIX} from '../../core/backup/snapshots.js'
import {CheckFailedError, ExternalError} from '../../errors.js'
import {openStore} from '../store/index.js'
import {TABLE_FILE, checkAgainstManifest, newlines, type ReadOptions} from './archive.js'
import {SnapshotRepository} from './snapshot-repository.js'

interface Handle {
  mlflowctlSnapshot: 1
  repository: string
  scratchRoot: string
  id: string
}

export const isSnapshotHandle = (path: string) => path.endsWith(SNAPSHOT_HANDLE_SUFFIX)

/** Writes the handle of snapshot `id` of the repository at `location` (a directory or a store URL) into `dir`. */
export async function writeHandle(dir: string, location: string, scratchRoot: string, id: string): Promise<string> {
  const path = join(dir, `${id}${SNAPSHOT_HANDLE_SUFFIX}`)
  const handle: Handle = {mlflowctlSnapshot: 1, repository: location, scratchRoot, id}
  await writeFile(path, JSON.stringify(handle), {mode: 0o600})
  return path
}

async function openHandle(path: string): Promise<{repo: SnapshotRepository; id: string}> {
  const handle = JSON.parse(await readFile(path, 'utf8')) as Handle
  return {repo: new SnapshotRepository(await openStore(handle.repository), handle.scratchRoot), id: handle.id}
}

async function documentOf(repo: SnapshotRepository, id: string) {
  const doc = await repo.document(id)
  if (!doc)
    throw new ExternalError('BACKUP_NOT_FOUND', `${repo.display} holds no snapshot ${id}.`, {
      suggestions: ['List the backups: mlflowctl backup list --repo REPO.'],
    })
  return doc
}

/** The manifest a snapshot lists (its tree is checked against it when the snapshot is read). */
export async function snapshotManifest(path: string): Promise<BackupManifest> {
  const {repo, id} = await openHandle(path)
  return (await documentOf(repo, id)).manifest
}

/**
 * Reads every file of the snapshot in manifest order, each blob checked against its ID and each file against the
 * manifest's size and SHA-256, with what verifyBackupArchive checks of an archive. Returns the manifest.
 * @throws CheckFailedError BACKUP_CORRUPT, BACKUP_DECRYPT_FAILED; ExternalError BACKUP_NOT_FOUND
 */
export async function readSnapshotBackup(path: string, options: ReadOptions): Promise<BackupManifest> {
  const {repo, id} = await openHandle(path)
  const where = `${repo.display} snapshot ${id}`
  const corrupt = (why: string) =>
    new CheckFailedError('BACKUP_CORRUPT', `${where}: ${why}.`, {
      suggestions: [
        'Use another backup (mlflowctl backup list), and run mlflowctl backup verify --read-data on this one.',
      ],
    })
  const doc = await documentOf(repo, id)
  const opened = await repo.open(options.passphrase)
  const tree = await repo.tree(doc, opened.keys)
  const index = await repo.loadIndex(opened.keys, await repo.storedPacks())
  const packs = repo.packReader()
  const seen = new Map<string, {size: number; sha256: string}>()
  const linesByEntry = new Map<string, number>()
  let sqliteCopy: string | undefined
  try {
    for (const file of tree.files) {
      const unsafe = unsafeEntryName(file.path)
      if (unsafe) throw corrupt(`entry ${file.path} ${unsafe}`)
      const unexpected = options.expected ? unexpectedEntry(options.expected, file.path, file.size) : undefined
      if (unexpected) throw corrupt(unexpected)
      const hash = createHash('sha256')
      const isTableFile = TABLE_FILE.test(file.path)
      let size = 0
      let lines = 0
      const source = repo.readFile(file, index, opened.keys, packs)
      const tee = async function* () {
        for await (const chunk of source) {
          size += chunk.length
          hash.update(chunk)
          if (isTableFile) lines += newlines(chunk)
          yield chunk
        }
      }
      if (options.onEntry) await options.onEntry(file.path, tee())
      else if (options.sqliteScratch && file.path === SQLITE_FILE_ENTRY && !sqliteCopy) {
        sqliteCopy = join(options.sqliteScratch, 'verify-rows.db')
        await pipeline(tee(), createWriteStream(sqliteCopy, {mode: 0o600}))
      } else for await (const _ of tee());
      seen.set(file.path, {size, sha256: hash.digest('hex')})
      if (isTableFile) linesByEntry.set(file.path, lines)
    }
  } finally {
    await packs.close()
  }
  const manifest = doc.manifest
  await checkAgainstManifest(manifest, {seen, linesByEntry, sqliteCopy}, corrupt)
  if (options.expected && !sameManifest(manifest, options.expected))
    throw corrupt('its manifest differs from the one expected (it was changed meanwhile)')
  return manifest
}

/** The snapshots of a repository as `backup list` shows them (bytes: what each added to the repository). */
export async function snapshotEntries(
  repo: SnapshotRepository,
  verifiedAt: (id: string) => Promise<string | undefined>,
): Promise<RepoEntry[]> {
  const entries: RepoEntry[] = []
  for (const doc of await repo.documents()) {
    const id = doc.manifest.id
    entries.push({
      id,
      path: `${repo.display.replace(/\/+$/, '')}/snapshots/${id}.json`,
      bytes: doc.stats.bytesAdded,
      manifest: doc.manifest,
      verifiedAt: await verifiedAt(id),
      kind: 'snapshot',
    })
  }
  return entries
}
