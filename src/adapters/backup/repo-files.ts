// A backup repository in a local directory: archives, a listing sidecar per archive (the manifest, so that
// `list` need not read whole archives), a marker per successful verify, and the lock that keeps
// overlapping cron runs apart.
import {link, readFile, readdir, rename, rm, stat, writeFile} from 'node:fs/promises'
import {hostname} from 'node:os'
import {join} from 'node:path'

import {ARCHIVE_SUFFIX, invalidManifest, type BackupManifest} from '../../core/backup/format.js'
import {ExternalError, MlflowctlError} from '../../errors.js'
import {faultPoint} from '../fault.js'
import {deadRuns, processAlive, removeRuns} from '../fs/scratch.js'
import {fsFailure, makeDirs} from '../fs/safe-fs.js'

export const LOCK = '.mlflowctl-backup.lock'
/** A lock older than this is stale even if its process looks alive (PID reuse, another host). */
const LOCK_STALE_MS = 6 * 3_600_000
/** A writer fills its lock before it links it into place, so an empty one is debris (a lock made by an older
 * version on a full disk): taken over once it is older than any write could take. */
const EMPTY_LOCK_STALE_MS = 60_000

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
 * Takes the repository lock. The body is written to a private temp file that is then hard-linked to the lock's
 * name (atomic, and EEXIST when held), so a lock is never seen empty; a full disk fails before the lock exists.
 * A lock whose process is gone (same host) or that is older than six hours is stale: it is removed and taken
 * over, so a killed run never wedges the next one.
 * @throws ExternalError REPO_LOCKED, DISK_FULL, PATH_UNUSABLE
 */
export async function lockRepo(
  repo: string,
  onStale: (message: string) => void = () => undefined,
): Promise<() => Promise<void>> {
  await makeDirs(repo)
  const path = join(repo, LOCK)
  return takeLock({
    create: async (body) => {
      const temp = `${path}.${process.pid}.tmp`
      try {
        await writeFile(temp, body, {mode: 0o600})
        await link(temp, path)
        return true
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
        throw fsFailure(error, 'take the lock in', repo)
      } finally {
        await rm(temp, {force: true})
      }
    },
    read: async () => {
      const info = await stat(path).catch(() => undefined)
      return info ? {text: await readFile(path, 'utf8').catch(() => ''), mtimeMs: info.mtimeMs} : undefined
    },
    remove: () => rm(path, {force: true}),
    where: repo,
    onStale,
  })
}

export interface LockStore {
  /** Creates the lock only if absent (atomically); false when it exists. */
  create(body: string): Promise<boolean>
  /** The lock's content and age; undefined when it vanished meanwhile (then creating it is tried again). */
  read(): Promise<{text: string; mtimeMs: number} | undefined>
  remove(): Promise<void>
  where: string
  onStale(message: string): void
}

/**
 * The lock protocol for any store with an atomic create-if-absent (O_EXCL, If-None-Match, ifGenerationMatch):
 * a lock whose process is gone (same host) or older than six hours is stale, removed and taken over.
 * @throws ExternalError REPO_LOCKED
 */
export async function takeLock(store: LockStore): Promise<() => Promise<void>> {
  const me = {pid: process.pid, host: hostname(), startedAt: new Date().toISOString()}
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await store.create(JSON.stringify(me))) return () => store.remove()
    const current = await store.read()
    if (!current) continue // released between our create and our read: try again
    const {text, mtimeMs} = current
    let holder: {pid?: number; host?: string; startedAt?: string} = {}
    try {
      holder = JSON.parse(text)
    } catch {
      // unreadable or half-written: judged by its age below
    }
    const age = Date.now() - (holder.startedAt ? Date.parse(holder.startedAt) : mtimeMs)
    const dead = holder.host === me.host && typeof holder.pid === 'number' && !processAlive(holder.pid)
    const emptyDebris = text.trim() === '' && Date.now() - mtimeMs >= EMPTY_LOCK_STALE_MS
    if (!dead && !emptyDebris && age < LOCK_STALE_MS) {
      throw new ExternalError(
        'REPO_LOCKED',
        `Another backup holds the lock on ${store.where} (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'}, since ${holder.startedAt ?? '?'}).`,
        {
          suggestions: [
            'Let it finish; overlapping cron runs are refused on purpose. A lock left by a killed run is taken over once its process is gone.',
          ],
        },
      )
    }
    store.onStale(
      emptyDebris
        ? `took over an empty lock on ${store.where} (left by a run that could not write it, e.g. on a full disk)`
        : `took over a stale lock on ${store.where} (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'}, since ${holder.startedAt ?? '?'})`,
    )
    await store.remove()
  }
  throw new ExternalError('REPO_LOCKED', `Could not take the lock on ${store.where}.`)
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
