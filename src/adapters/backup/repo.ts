// A backup repository in a local directory: archives, a listing sidecar per archive (the manifest, so that
// `list` need not read whole archives), a marker per successful verify, and the lock that keeps
// overlapping cron runs apart.
import {randomBytes} from 'node:crypto'
import {constants} from 'node:fs'
import {mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile} from 'node:fs/promises'
import {hostname, tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {ARCHIVE_SUFFIX, invalidManifest, type BackupManifest} from '../../core/backup/format.js'
import {ExternalError} from '../../errors.js'

export const LOCK = '.mlflowctl-backup.lock'
/** A lock older than this is stale even if its process looks alive (PID reuse, another host). */
const LOCK_STALE_MS = 6 * 3_600_000

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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Takes the repository lock (O_EXCL). A lock whose process is gone (same host) or that is older than
 * six hours is stale: it is removed and taken over, so a killed run never wedges the next one.
 * @throws ExternalError REPO_LOCKED
 */
export async function lockRepo(repo: string, onStale: (message: string) => void = () => undefined): Promise<() => Promise<void>> {
  await mkdir(repo, {recursive: true, mode: 0o700})
  const path = join(repo, LOCK)
  return takeLock({
    create: async (body) => {
      try {
        const handle = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600)
        await handle.writeFile(body)
        await handle.close()
        return true
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
        throw error
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
    const dead = holder.host === me.host && typeof holder.pid === 'number' && !alive(holder.pid)
    if (!dead && age < LOCK_STALE_MS) {
      throw new ExternalError('REPO_LOCKED', `Another backup holds the lock on ${store.where} (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'}, since ${holder.startedAt ?? '?'}).`, {
        suggestions: ['Let it finish; overlapping cron runs are refused on purpose. A lock left by a killed run is taken over once its process is gone.'],
      })
    }
    store.onStale(`took over a stale lock on ${store.where} (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'}, since ${holder.startedAt ?? '?'})`)
    await store.remove()
  }
  throw new ExternalError('REPO_LOCKED', `Could not take the lock on ${store.where}.`)
}

export async function writeSidecar(repo: string, manifest: BackupManifest): Promise<void> {
  await writeFile(sidecar(repo, manifest.id), `${JSON.stringify(manifest, null, 2)}\n`, {mode: 0o600})
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
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ExternalError('REPO_NOT_FOUND', `The backup repository ${repo} does not exist.`)
    throw error
  }
  const entries: RepoEntry[] = []
  for (const name of names.filter((n) => n.endsWith(ARCHIVE_SUFFIX))) {
    const id = name.slice(0, -ARCHIVE_SUFFIX.length)
    try {
      const manifest = JSON.parse(await readFile(sidecar(repo, id), 'utf8')) as BackupManifest
      if (invalidManifest(manifest) || manifest.id !== id) continue
      const verified = await readFile(marker(repo, id), 'utf8').then((text) => (JSON.parse(text) as {verifiedAt: string}).verifiedAt, () => undefined)
      entries.push({id, path: join(repo, name), bytes: (await stat(join(repo, name))).size, manifest, verifiedAt: verified})
    } catch {
      // no sidecar: not a complete backup of this tool
    }
  }
  return entries.sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt))
}

export async function removeBackup(repo: string, id: string): Promise<void> {
  for (const path of [archivePath(repo, id), sidecar(repo, id), marker(repo, id)]) await rm(path, {force: true})
}

export async function scratchDir(): Promise<{path: string; remove(): Promise<void>}> {
  const path = await mkdtemp(join(tmpdir(), `mlflowctl-backup-${randomBytes(3).toString('hex')}-`))
  return {path, remove: () => rm(path, {recursive: true, force: true})}
}

/** Regular files under `dir`, sorted, as archive entries artifacts/<relative path>. Symlinks are skipped. */
export async function* walkArtifacts(dir: string, root = dir): AsyncIterable<{name: string; file: string}> {
  const entries = (await readdir(dir, {withFileTypes: true})).sort((a, b) => a.name.localeCompare(b.name))
  for (const entry of entries) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) yield* walkArtifacts(full, root)
    else if (entry.isFile()) yield {name: `artifacts/${relative(root, full).split('\\').join('/')}`, file: full}
  }
}
