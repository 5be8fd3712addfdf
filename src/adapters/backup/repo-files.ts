// A backup repository in a local directory: archives, a listing sidecar per archive (the manifest, so that
// `list` need not read whole archives), a marker per successful verify, and the lock that keeps
// overlapping cron runs apart.
import {readFile, readdir, rename, rm, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {ARCHIVE_SUFFIX, invalidManifest, type BackupManifest} from '../../core/backup/format.js'
import {ExternalError, MlflowctlError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {deadRuns, removeRuns} from '../fs/scratch.js'
import {processAlive} from '../fs/lease.js'
import {lockFile, repoLocked} from '../lock.js'
import {fsFailure, makeDirs} from '../fs/safe-fs.js'

export const LOCK = '.mlflowctl-backup.lock'

export interface RepoEntry {
  id: string
  path: string
  bytes: number
  manifest: BackupManifest
  verifiedAt?: string
}

export const SIDECAR_SUFFIX = '.manifest.json'
export const MARKER_SUFFIX = '.verified.json'
const sidecar = (repo: string, id: string) => join(repo, `${id}${SIDECAR_SUFFIX}`)
const marker = (repo: string, id: string) => join(repo, `${id}${MARKER_SUFFIX}`)
export const archivePath = (repo: string, id: string) => join(repo, `${id}${ARCHIVE_SUFFIX}`)

/**
 * Takes the repository lock (adapters/lock.ts): an overlapping run is refused; a lock whose holder is gone (its
 * process on this host, or its heartbeat from another) is taken over with a warning, so a killed run never wedges
 * the next one.
 * @throws ExternalError REPO_LOCKED, DISK_FULL, PATH_UNUSABLE
 */
export async function lockRepo(
  repo: string,
  onStale: (message: string) => void = () => undefined,
): Promise<() => Promise<void>> {
  await makeDirs(repo)
  return lockFile(join(repo, LOCK), {where: repo, onStale, held: repoLocked(repo)})
}

export async function writeSidecar(repo: string, manifest: BackupManifest): Promise<void> {
  faultPoint('create:before-sidecar')
  // Through a temp file and a rename: a half-written sidecar would list a backup with a broken manifest.
  const temp = `${sidecar(repo, manifest.id)}.${process.pid}.tmp`
  try {
    await writeFile(temp, `${JSON.stringify(manifest, null, 2)}\n`, {mode: 0o600})
    await rename(temp, sidecar(repo, manifest.id))
  } catch (error) {
    await rm(temp, {force: true})
    throw fsFailure(error, 'write the listing sidecar in', repo)
  }
}

export const isCommitted = (repo: string, id: string) =>
  stat(sidecar(repo, id)).then(
    () => true,
    () => false,
  )

/**
 * Under the lock, what killed runs left in a local repository: `.partial` archives and stray temp files are
 * removed; an archive without its sidecar (killed between the rename and the sidecar) is committed when it
 * verifies, removed when it is damaged, and left with a warning when it cannot be read (another passphrase).
 */
export async function cleanUpRepo(repo: string, verify: (path: string) => Promise<BackupManifest>): Promise<string[]> {
  const messages: string[] = []
  const names = await readdir(repo).catch(() => [] as string[])
  for (const name of names.filter((n) => n.endsWith(`${ARCHIVE_SUFFIX}.partial`) || /\.\d+\.tmp$/.test(n))) {
    const pid = Number(/\.(\d+)\.tmp$/.exec(name)?.[1] ?? NaN)
    if (!Number.isNaN(pid) && processAlive(pid)) continue
    const size = (await stat(join(repo, name)).catch(() => undefined))?.size ?? 0
    await rm(join(repo, name), {force: true})
    messages.push(`removed ${name} (${size} bytes), left by a killed run`)
  }
  for (const name of names.filter((n) => n.endsWith(ARCHIVE_SUFFIX))) {
    const id = name.slice(0, -ARCHIVE_SUFFIX.length)
    if (await isCommitted(repo, id)) continue
    messages.push(
      await settleUnlisted(id, name, {
        verify: () => verify(join(repo, name)),
        commit: (manifest) => writeSidecar(repo, manifest),
        remove: () => rm(join(repo, name), {force: true}),
      }),
    )
  }
  for (const run of await removeRuns(await deadRuns(repo)))
    messages.push(`removed the scratch space of a killed run: ${run}`)
  return messages
}

/**
 * An archive a kill left without its listing sidecar: committed when it verifies (it was written whole), removed
 * when it is damaged, left alone when it cannot be read (another passphrase). Returns what was done.
 */
export async function settleUnlisted(
  id: string,
  where: string,
  store: {verify(): Promise<BackupManifest>; commit(manifest: BackupManifest): Promise<void>; remove(): Promise<void>},
): Promise<string> {
  try {
    const manifest = await store.verify()
    if (manifest.id !== id) throw new Error(`it holds backup ${manifest.id}`)
    await store.commit(manifest)
    return `committed ${id}: a killed run had written it whole but not listed it; it verified`
  } catch (error) {
    if (error instanceof MlflowctlError && error.code === 'BACKUP_CORRUPT') {
      await store.remove()
      return `removed ${where}: unlisted and damaged (${error.message})`
    }
    return `left ${where} alone: it is not listed and could not be checked (${(error as Error).message})`
  }
}

export async function markVerified(repo: string, id: string, at: Date): Promise<void> {
  await writeFile(marker(repo, id), `${JSON.stringify({verifiedAt: at.toISOString()})}\n`, {mode: 0o600})
}

/** Complete backups only: an archive without its sidecar (or a .partial) is not listed. Newest first. */
export async function listRepo(repo: string): Promise<RepoEntry[]> {
  let names: string[]
  try {
    names = await readdir(repo)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new ExternalError('REPO_NOT_FOUND', `The backup repository ${repo} does not exist.`)
    throw error
  }
  const entries: RepoEntry[] = []
  for (const name of names.filter((n) => n.endsWith(ARCHIVE_SUFFIX))) {
    const id = name.slice(0, -ARCHIVE_SUFFIX.length)
    try {
      const manifest = JSON.parse(await readFile(sidecar(repo, id), 'utf8')) as BackupManifest
      if (invalidManifest(manifest) || manifest.id !== id) continue
      const verified = await readFile(marker(repo, id), 'utf8').then(
        (text) => (JSON.parse(text) as {verifiedAt: string}).verifiedAt,
        () => undefined,
      )
      entries.push({
        id,
        path: join(repo, name),
        bytes: (await stat(join(repo, name))).size,
        manifest,
        verifiedAt: verified,
      })
    } catch {
      // no sidecar: not a complete backup of this tool
    }
  }
  return entries.sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt))
}

export async function removeBackup(repo: string, id: string): Promise<void> {
  for (const path of [archivePath(repo, id), sidecar(repo, id), marker(repo, id)]) await rm(path, {force: true})
}
