// One lock protocol for every place mlflowctl locks (a backup repository in a directory or a bucket, a restore
// target, an upgrade): an atomic create-if-absent of a small JSON body naming the holder, and a takeover of a lock
// whose holder is gone. A lock file on local disk is a lease (fs/lease.ts): its holder keeps touching it, so it is
// judged alive or dead whatever host or PID the holder had.
import {link, readFile, rm, stat, writeFile} from 'node:fs/promises'

import {hostname} from 'node:os'

import {ExternalError, type MlflowctlError} from '../errors.js'
import {fsFailure} from './fs/safe-fs.js'
import {keepAlive, leasesAlive, me, processAlive, readHolder, type LeaseHolder} from './fs/lease.js'

/** A holder without a heartbeat (a lock object in a bucket) is stale once it is this old. */
const UNBEATEN_STALE_MS = 6 * 3_600_000
/** A writer fills its lock before it links it into place, so an empty one is debris (a lock made by an older
 * version on a full disk): taken over once it is older than any write could take. */
const EMPTY_LOCK_STALE_MS = 60_000

export interface LockStore {
  /** Creates the lock only if absent (atomically); false when it exists. */
  create(body: string): Promise<boolean>
  /** The lock's content and age; undefined when it vanished meanwhile (then creating it is tried again). */
  read(): Promise<{text: string; mtimeMs: number} | undefined>
  remove(): Promise<void>
  /** Whether the holder of the lock is alive. */
  alive(holder: LeaseHolder, mtimeMs: number): Promise<boolean>
  /** Starts the heartbeat of a lock just taken (a lease); returns what stops it. */
  keepAlive?(): () => void
}

export interface LockOptions {
  /** What is locked, for messages ("/backups/mlflow"). */
  where: string
  /** What the holder does, written into the lock for whoever is refused ("restore"). */
  purpose?: string
  onStale(message: string): void
  /** The refusal when a live holder has it (REPO_LOCKED, TARGET_LOCKED). */
  held(holder: LeaseHolder): MlflowctlError
}

export const describeHolder = (holder: LeaseHolder) =>
  `${holder.purpose ? `a ${holder.purpose}, ` : ''}pid ${holder.pid ?? '?'} on ${holder.host ?? '?'}, since ${holder.startedAt ?? '?'}`

/**
 * Takes the lock, taking over a stale one (its holder gone, or an empty lock a minute old) with a warning. The
 * returned release removes the lock only while it is still this run's.
 * @throws whatever `held` makes when a live holder has it
 */
export async function takeLock(store: LockStore, options: LockOptions): Promise<() => Promise<void>> {
  const body = JSON.stringify({...me(), ...(options.purpose ? {purpose: options.purpose} : {})})
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await store.create(body)) {
      const stop = store.keepAlive?.()
      return async () => {
        stop?.()
        if ((await store.read().catch(() => undefined))?.text === body) await store.remove()
      }
    }
    const current = await store.read()
    if (!current) continue // released between our create and our read: try again
    const holder = readHolder(current.text)
    const empty = current.text.trim() === ''
    const stale = empty
      ? Date.now() - current.mtimeMs >= EMPTY_LOCK_STALE_MS
      : !(await store.alive(holder, current.mtimeMs))
    if (!stale) throw options.held(holder)
    options.onStale(
      empty
        ? `took over an empty lock on ${options.where} (left by a run that could not write it, e.g. on a full disk)`
        : `took over a stale lock on ${options.where} (${describeHolder(holder)}; that run is gone)`,
    )
    await store.remove()
  }
  throw options.held({})
}

/** A holder without a heartbeat: alive while its process is (same host), else until it is six hours old. */
export async function aliveUnbeaten(holder: LeaseHolder, mtimeMs: number): Promise<boolean> {
  if (holder.host === hostname() && typeof holder.pid === 'number') return processAlive(holder.pid)
  const since = holder.startedAt ? Date.parse(holder.startedAt) : mtimeMs
  return Date.now() - since < UNBEATEN_STALE_MS
}

/**
 * A lock file on local disk: the body is written to a private temp file that is then hard-linked to the lock's
 * name (atomic, and EEXIST when held), so a lock is never seen empty and a full disk fails before it exists; the
 * holder's heartbeat keeps it fresh.
 * @throws whatever `options.held` makes; DISK_FULL, PATH_UNUSABLE
 */
export function lockFile(path: string, options: LockOptions): Promise<() => Promise<void>> {
  return takeLock(
    {
      create: async (body) => {
        const temp = `${path}.${process.pid}.tmp`
        try {
          await writeFile(temp, body, {mode: 0o600})
          await link(temp, path)
          return true
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
          throw fsFailure(error, 'take the lock', path)
        } finally {
          await rm(temp, {force: true})
        }
      },
      read: async () => {
        const info = await stat(path).catch(() => undefined)
        return info ? {text: await readFile(path, 'utf8').catch(() => ''), mtimeMs: info.mtimeMs} : undefined
      },
      remove: () => rm(path, {force: true}),
      alive: async (holder) => (await leasesAlive([{path, holder}]))[0],
      keepAlive: () => keepAlive(path),
    },
    options,
  )
}

/** The refusal of a locked backup repository. */
export const repoLocked = (where: string) => (holder: LeaseHolder) =>
  new ExternalError('REPO_LOCKED', `Another backup holds the lock on ${where} (${describeHolder(holder)}).`, {
    suggestions: [
      'Let it finish; overlapping cron runs are refused on purpose. A lock left by a killed run is taken over once its holder is gone.',
    ],
  })
