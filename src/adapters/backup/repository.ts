// A backup repository: a local directory or an object-store prefix (s3://, wasbs://, gs://), behind one
// interface. Both keep the same layout: ID.mlflowctl-backup.tar.gz, ID.manifest.json (written last: the
// commit mark that `list` requires), ID.verified.json and the lock. An object-store archive is staged in
// scratch space and uploaded; reading one downloads it to scratch first.
import {rename, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {isObjectStoreUrl} from '../../core/artifact-url.js'
import {ARCHIVE_SUFFIX, invalidManifest, type BackupManifest} from '../../core/backup/format.js'
import {ExternalError} from '../../errors.js'
import {isNotFound as notFound, listAll, openStore, type Store} from '../store/index.js'
import {faultPoint} from '../fault.js'
import {aliveUnbeaten, repoLocked, takeLock} from '../lock.js'
import {me} from '../fs/lease.js'
import {deadRuns, openScratch, removeRuns, type Scratch} from '../fs/scratch.js'
import {
  IN_PROGRESS_DIR,
  LOCK,
  MARKER_SUFFIX,
  SIDECAR_SUFFIX,
  archivePath,
  beginWrite,
  cleanUpRepo,
  endWrite,
  inProgress,
  isCommitted,
  listRepo,
  lockRepo,
  markVerified,
  removeBackup,
  settleUnlisted,
  strangerArchive,
  writeSidecar,
} from './repo-files.js'
import type {BackupRepository as Repository, RepoEntry} from '../../core/backup/repository.js'
import {directoryStore} from '../store/directory.js'
import {SnapshotRepository} from './snapshot-repository.js'
import {snapshotEntries, writeHandle} from './snapshot-backup.js'
import {snapshotWriter} from './snapshot-writer.js'
import {MARKER_SUFFIX as VERIFIED_SUFFIX} from './repo-files.js'

/** The archive operations of a repository, before the snapshot side is added. */
type ArchiveSide = Omit<Repository, 'format' | 'collectGarbage' | 'checkSnapshots' | 'snapshotWriter'>

/** A repository: archives, and snapshots in the same store (snapshot-repository.ts). */
export type BackupRepository = Repository

/**
 * Adds the snapshot side to an archive repository: `list` shows both kinds, `fetch` of a snapshot ID gives a handle
 * that verifyBackupArchive reads as it would an archive, and `remove` of one deletes its document (prune then
 * collects its data).
 */
function withSnapshots(base: ArchiveSide, store: Store, scratchRoot: string): BackupRepository {
  const snapshots = new SnapshotRepository(store, scratchRoot)
  const verifiedAt = async (id: string) => {
    try {
      return (JSON.parse((await store.get(`${id}${VERIFIED_SUFFIX}`)).toString('utf8')) as {verifiedAt?: string})
        .verifiedAt
    } catch {
      return undefined
    }
  }
  const isSnapshot = async (id: string) => /^[\w.-]+$/.test(id) && (await snapshots.documentIds()).includes(id)
  return {
    ...base,
    async list() {
      const archives = await base.list()
      const taken = await snapshotEntries(snapshots, verifiedAt)
      return [...archives.map((entry) => ({...entry, kind: 'archive' as const})), ...taken].sort((a, b) =>
        b.manifest.createdAt.localeCompare(a.manifest.createdAt),
      )
    },
    async fetch(id) {
      if (!(await isSnapshot(id))) return base.fetch(id)
      const scratch = await openScratch(scratchRoot)
      return {
        path: await writeHandle(scratch.path, store.localPath('') ?? store.display, scratchRoot, id),
        release: () => scratch.remove(),
      }
    },
    async remove(id) {
      if (!(await isSnapshot(id))) return base.remove(id)
      await snapshots.removeSnapshot(id)
      faultPoint('prune:snapshot-removed')
      await store.delete(`${id}${VERIFIED_SUFFIX}`).catch(() => undefined)
    },
    isCommitted: async (id) => (await base.isCommitted(id)) || (await isSnapshot(id)),
    format: async () => (await snapshots.config())?.format,
    snapshotWriter: (passphrase, onWarning) => snapshotWriter(snapshots, () => base.list(), passphrase, onWarning),
    collectGarbage: async (passphrase) => snapshots.collectGarbage(await snapshots.open(passphrase)),
    async checkSnapshots(ids, passphrase, readData) {
      const opened = await snapshots.open(passphrase)
      const docs = (await snapshots.documents()).filter((doc) => ids.includes(doc.manifest.id))
      return snapshots.check(docs, opened, readData)
    },
  }
}

export function localRepository(dir: string, scratchRoot = defaultScratchRoot()): BackupRepository {
  return withSnapshots(
    {
      display: dir,
      lock: (onStale) => lockRepo(dir, onStale),
      async stageArchive(id) {
        await beginWrite(dir, id)
        return archivePath(dir, id) // writeBackupArchive writes .partial and renames
      },
      async commitArchive(manifest, staged) {
        await writeSidecar(dir, manifest)
        await endWrite(dir, manifest.id)
        return staged
      },
      list: () => listRepo(dir),
      fetch: async (id) => ({path: archivePath(dir, id), release: async () => undefined}),
      markVerified: (id, at) => markVerified(dir, id, at),
      remove: (id) => removeBackup(dir, id),
      cleanUp: (verify) => cleanUpRepo(dir, verify),
      isCommitted: (id) => isCommitted(dir, id),
      inProgress: (id) => inProgress(dir, id),
      abandonArchive: (id) => endWrite(dir, id),
    },
    directoryStore(dir),
    scratchRoot,
  )
}

/** Scratch space of object-store repositories (the archive is staged on local disk before the upload). */
export const defaultScratchRoot = () => join(tmpdir(), `mlflowctl-${process.getuid?.() ?? 'user'}`)

/** A repository in a store that is not a local directory: archives are staged in scratch space and uploaded. */
export function objectStoreRepository(objects: Store, scratchRoot = defaultScratchRoot()): BackupRepository {
  const url = (name: string) => `${objects.display.replace(/\/+$/, '')}/${name}`
  const scratches = new Map<string, Scratch>()
  const scratchDir = () => openScratch(scratchRoot)
  const readJson = async <T>(name: string): Promise<T | undefined> => {
    try {
      return JSON.parse((await objects.get(name)).toString('utf8')) as T
    } catch (error) {
      if (notFound(error) || error instanceof SyntaxError) return undefined
      throw error
    }
  }
  const repository: ArchiveSide = {
    display: objects.display,
    lock: (onStale) =>
      takeLock(
        {
          create: (body) => objects.putIfAbsent(LOCK, Buffer.from(body)),
          // Only "not found" means the lock is gone; any other failure (a 5xx, a 403) must not look like a stale lock.
          read: async () => {
            try {
              return {text: (await objects.get(LOCK)).toString('utf8'), mtimeMs: Date.now()}
            } catch (error) {
              if (notFound(error)) return undefined
              throw error
            }
          },
          remove: () => objects.delete(LOCK).catch((error) => (notFound(error) ? undefined : Promise.reject(error))),
          alive: aliveUnbeaten,
        },
        {where: objects.display, onStale, held: repoLocked(objects.display)},
      ),
    async stageArchive(id) {
      await objects.put(`${IN_PROGRESS_DIR}/${id}.json`, Buffer.from(JSON.stringify(me())))
      const scratch = await scratchDir()
      scratches.set(id, scratch)
      return join(scratch.path, `${id}${ARCHIVE_SUFFIX}`)
    },
    async commitArchive(manifest, staged) {
      const name = `${manifest.id}${ARCHIVE_SUFFIX}`
      try {
        await objects.uploadFile(name, staged)
        faultPoint('create:before-sidecar')
        await objects.put(`${manifest.id}${SIDECAR_SUFFIX}`, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`))
        await objects.delete(`${IN_PROGRESS_DIR}/${manifest.id}.json`).catch(() => undefined)
      } catch (error) {
        await objects.delete(name).catch(() => undefined)
        throw new ExternalError(
          'BACKUP_WRITE_FAILED',
          `Cannot upload ${manifest.id} to ${objects.display}: ${(error as Error).message}.`,
          {cause: error},
        )
      } finally {
        await scratches.get(manifest.id)?.remove()
        scratches.delete(manifest.id)
      }
      return url(name)
    },
    async list() {
      const names = new Map((await listAll(objects)).map((item) => [item.key, item.size]))
      const entries: RepoEntry[] = []
      for (const [name, bytes] of names) {
        if (!name.endsWith(ARCHIVE_SUFFIX) || name.includes('/')) continue
        const id = name.slice(0, -ARCHIVE_SUFFIX.length)
        if (!names.has(`${id}${SIDECAR_SUFFIX}`)) continue // not committed
        const manifest = await readJson<BackupManifest>(`${id}${SIDECAR_SUFFIX}`)
        if (!manifest || invalidManifest(manifest) || manifest.id !== id) continue
        const verifiedAt = names.has(`${id}${MARKER_SUFFIX}`)
          ? (await readJson<{verifiedAt: string}>(`${id}${MARKER_SUFFIX}`))?.verifiedAt
          : undefined
        entries.push({id, path: url(name), bytes, manifest, verifiedAt})
      }
      return entries.sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt))
    },
    async fetch(id) {
      const scratch = await scratchDir()
      const path = join(scratch.path, `${id}${ARCHIVE_SUFFIX}`)
      try {
        await objects.downloadFile(`${id}${ARCHIVE_SUFFIX}`, `${path}.partial`)
        await rename(`${path}.partial`, path)
        // The sidecar comes along when there is one: a restore checks each entry against it before writing.
        const listing = await readJson<BackupManifest>(`${id}${SIDECAR_SUFFIX}`)
        if (listing)
          await writeFile(join(scratch.path, `${id}${SIDECAR_SUFFIX}`), JSON.stringify(listing), {mode: 0o600})
      } catch (error) {
        await scratch.remove()
        if (notFound(error))
          throw new ExternalError('BACKUP_NOT_FOUND', `${url(`${id}${ARCHIVE_SUFFIX}`)} does not exist.`, {
            suggestions: ['List the backups: mlflowctl backup list --repo REPO.'],
          })
        throw error
      }
      return {path, release: () => scratch.remove()}
    },
    markVerified: (id, at) =>
      objects.put(`${id}${MARKER_SUFFIX}`, Buffer.from(`${JSON.stringify({verifiedAt: at.toISOString()})}\n`)),
    async isCommitted(id) {
      return (await listAll(objects)).some((item) => item.key === `${id}${SIDECAR_SUFFIX}`)
    },
    abandonArchive: (id) =>
      objects
        .delete(`${IN_PROGRESS_DIR}/${id}.json`)
        .catch((error) => (notFound(error) ? undefined : Promise.reject(error))),
    async inProgress(id) {
      return (await listAll(objects)).some((item) => item.key === `${IN_PROGRESS_DIR}/${id}.json`)
    },
    async cleanUp(verify) {
      // Archives uploaded whole but never listed (killed before the sidecar): committed when they verify.
      const messages: string[] = []
      const listed = new Set((await listAll(objects)).map((item) => item.key))
      const marked = (id: string) => listed.has(`${IN_PROGRESS_DIR}/${id}.json`)
      for (const name of [...listed].filter((n) => n.endsWith(ARCHIVE_SUFFIX) && !n.includes('/'))) {
        const id = name.slice(0, -ARCHIVE_SUFFIX.length)
        if (listed.has(`${id}${SIDECAR_SUFFIX}`)) continue
        // Only an archive a run of this tool recorded writing is its to settle; another is someone's upload.
        if (!marked(id)) {
          messages.push(strangerArchive(url(name)))
          continue
        }
        const local = await repository.fetch(id)
        try {
          const said = await settleUnlisted(id, url(name), {
            verify: () => verify(local.path),
            commit: (manifest) =>
              objects.put(`${id}${SIDECAR_SUFFIX}`, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`)),
            remove: () => objects.delete(name),
          })
          messages.push(said)
          if (!said.startsWith('left ')) await objects.delete(`${IN_PROGRESS_DIR}/${id}.json`)
        } finally {
          await local.release()
        }
      }
      // Markers of runs that never uploaded their archive (killed before it, or failed): nothing to settle.
      for (const name of [...listed].filter((n) => n.startsWith(`${IN_PROGRESS_DIR}/`))) {
        const id = name.slice(IN_PROGRESS_DIR.length + 1, -'.json'.length)
        if (!listed.has(`${id}${ARCHIVE_SUFFIX}`) || listed.has(`${id}${SIDECAR_SUFFIX}`)) await objects.delete(name)
      }
      for (const run of await removeRuns(await deadRuns(scratchRoot)))
        messages.push(`removed the scratch space of a killed run: ${run}`)
      return messages
    },
    async remove(id) {
      for (const name of [`${id}${SIDECAR_SUFFIX}`, `${id}${ARCHIVE_SUFFIX}`, `${id}${MARKER_SUFFIX}`]) {
        await objects.delete(name).catch((error) => (notFound(error) ? undefined : Promise.reject(error)))
      }
    },
  }
  return withSnapshots(repository, objects, scratchRoot)
}

/** A directory (resolved by the caller) or an object-store URL (its scratch space under `scratchRoot`). */
export async function openRepository(
  raw: string,
  resolvePath: (path: string) => string,
  scratchRoot?: string,
): Promise<BackupRepository> {
  return isObjectStoreUrl(raw)
    ? objectStoreRepository(await openStore(raw), scratchRoot)
    : localRepository(resolvePath(raw), scratchRoot)
}

/** An archive given as an ID (with a repository) or as a local path. */
/** The backup argument that names the newest backup of a repository. */
export const LATEST = 'latest'

/** The archive a backup argument names: an ID or `latest` in --repo, else a file path. */
export async function fetchArchive(
  backup: string,
  repository: BackupRepository | undefined,
  resolvePath: (path: string) => string,
): Promise<{path: string; release(): Promise<void>; id?: string}> {
  if (repository && backup === LATEST) {
    // restic's "latest": the newest listed backup (IDs sort by time; list is the commit mark).
    // The newest by creation time: IDs carry whole seconds only, so two backups in one second sort by their random part.
    const newest = (await repository.list())
      .sort((a, b) => a.manifest.createdAt.localeCompare(b.manifest.createdAt) || a.id.localeCompare(b.id))
      .at(-1)?.id
    if (!newest)
      throw new ExternalError('BACKUP_NOT_FOUND', `${repository.display} holds no backup, so there is no latest.`, {
        suggestions: ['Create one: mlflowctl backup create --source SOURCE --repo REPO.'],
      })
    return {...(await repository.fetch(newest)), id: newest}
  }
  if (repository && !backup.includes('/')) return {...(await repository.fetch(backup)), id: backup}
  return {path: resolvePath(backup), release: async () => undefined}
}
