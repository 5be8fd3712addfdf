// A backup repository in a local directory: archives, a listing sidecar per archive (the manifest, so that
// `list` need not read whole archives), a marker per successful verify, and the lock that keeps
// overlapping cron runs apart.
import {readFile, readdir, rename, rm, rmdir, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {ARCHIVE_SUFFIX, invalidManifest, type BackupManifest} from '../../core/backup/format.js'
import {ExternalError, MlflowctlError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {deadRuns, removeRuns} from '../fs/scratch.js'
import {me, processAlive} from '../fs/lease.js'
import {lockFile, repoLocked} from '../lock.js'
import {fsFailure, makeDirs, writeDurable} from '../fs/safe-fs.js'
import type {RepoEntry} from '../../core/backup/repository.js'

export const LOCK = '.mlflowctl-backup.lock'

export type {RepoEntry} from '../../core/backup/repository.js'

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

/** Where `backup create` records the archives it is writing (ID.json each), until their sidecar lists them. */
export const IN_PROGRESS_DIR = '.mlflowctl-in-progress'
const inProgressMarker = (repo: string, id: string) => join(repo, IN_PROGRESS_DIR, `${id}.json`)
/** This tool's own temp files in a repository: a sidecar or the lock being written by process PID. */
const OWN_TEMP = /^(\d{8}T\d{6}Z-[0-9a-f]{6}\.manifest\.json|\.mlflowctl-backup\.lock)\.(\d+)\.tmp$/
const OWN_PARTIAL = new RegExp(`^\\d{8}T\\d{6}Z-[0-9a-f]{6}${ARCHIVE_SUFFIX.replaceAll('.', '\\.')}\\.partial$`)

/** Records, durably and before a byte of it is written, that this run writes archive ID into the repository. */
export async function beginWrite(repo: string, id: string): Promise<void> {
  try {
    await makeDirs(join(repo, IN_PROGRESS_DIR))
    await writeDurable(inProgressMarker(repo, id), JSON.stringify(me()))
  } catch (error) {
    await endWrite(repo, id)
    throw error instanceof MlflowctlError ? error : fsFailure(error, 'record the backup in progress in', repo)
  }
}

/** The archive is listed (its sidecar written), or its write failed: it is no longer in progress. */
export async function endWrite(repo: string, id: string): Promise<void> {
  await rm(inProgressMarker(repo, id), {force: true})
  await rm(`${inProgressMarker(repo, id)}.${process.pid}.tmp`, {force: true})
  await rmdir(join(repo, IN_PROGRESS_DIR)).catch(() => undefined)
}

/** Whether a run of this tool recorded that it was writing ID (a killed one, when no sidecar lists it). */
export const inProgress = (repo: string, id: string) =>
  stat(inProgressMarker(repo, id)).then(
    () => true,
    () => false,
  )

/** The warning about an unlisted archive that no run of this tool was writing: someone else's, left alone. */
export const strangerArchive = (where: string) =>
  `left ${where} alone: it is not listed (no sidecar) and no mlflowctl run was writing it, so it may be a copy still arriving; once its ID.manifest.json is beside it, backup list shows it (verify and restore take it by its path meanwhile)`

/**
 * Under the lock, what killed runs of this tool left in a local repository, and only that: its own `.partial`
 * archives and temp files are removed; an archive its in-progress marker names and no sidecar lists is committed
 * when it verifies, removed when it is damaged, and left with a warning when it cannot be read (another passphrase).
 * Any other unlisted archive (a copy another tool is writing) is named in a warning and never touched.
 */
export async function cleanUpRepo(repo: string, verify: (path: string) => Promise<BackupManifest>): Promise<string[]> {
  const messages: string[] = []
  const names = await readdir(repo).catch(() => [] as string[])
  for (const name of names.filter((n) => OWN_PARTIAL.test(n) || OWN_TEMP.test(n))) {
    const pid = Number(OWN_TEMP.exec(name)?.[2] ?? NaN)
    if (!Number.isNaN(pid) && processAlive(pid)) continue
    const size = (await stat(join(repo, name)).catch(() => undefined))?.size ?? 0
    await rm(join(repo, name), {force: true})
    messages.push(`removed ${name} (${size} bytes), left by a killed run`)
  }
  const markers = (await readdir(join(repo, IN_PROGRESS_DIR)).catch(() => [] as string[]))
    .filter((name) => name.endsWith('.json'))
    .map((name) => name.slice(0, -'.json'.length))
  for (const id of markers) {
    const name = `${id}${ARCHIVE_SUFFIX}`
    if (!(await isCommitted(repo, id)) && names.includes(name)) {
      const said = await settleUnlisted(id, name, {
        verify: () => verify(join(repo, name)),
        commit: (manifest) => writeSidecar(repo, manifest),
        remove: () => rm(join(repo, name), {force: true}),
      })
      messages.push(said)
      if (said.startsWith('left ')) continue // the marker stays for a run that can read it
    }
    await endWrite(repo, id)
  }
  await rmdir(join(repo, IN_PROGRESS_DIR)).catch(() => undefined)
  for (const name of names.filter((n) => n.endsWith(ARCHIVE_SUFFIX))) {
    const id = name.slice(0, -ARCHIVE_SUFFIX.length)
    if (!markers.includes(id) && !(await isCommitted(repo, id))) messages.push(strangerArchive(name))
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
