// The lock on what a restore replaces: one restore at a time per target, whatever its kind, and no backup
// recovering an interrupted restore while another restore works there. Files and directories are locked by a
// lock file beside what they protect (a lease, adapters/lock.ts); PostgreSQL by an advisory lock held on its own
// connection, which the server releases when the connection dies with its process; a Connect deployment by a
// lock file in this machine's data directory (the extension refuses a second upload on its side too).
import {basename, dirname, join} from 'node:path'

import type {RestoreTarget} from '../../core/backup/restore.js'
import {isObjectStoreUrl} from '../../core/artifact-url.js'
import {parseDatabaseUrl} from '../../core/database-url.js'
import {ExternalError} from '../../errors.js'
import {withPostgres} from '../db/postgres.js'
import {makeDirs} from '../fs/safe-fs.js'
import {describeHolder, lockFile} from '../lock.js'
import {TARGET_LOCK, checkTargetKind} from './restore-target.js'
import type {LeaseHolder} from '../fs/lease.js'

/** PostgreSQL advisory lock key of restores into a database (restore_db.py holds another, its own). */
const POSTGRES_TARGET_LOCK = 0x6d6c66637472

const targetLocked = (where: string, holder: LeaseHolder | string) =>
  new ExternalError(
    'TARGET_LOCKED',
    `Another run is working on ${where} (${typeof holder === 'string' ? holder : describeHolder(holder)}); nothing was changed.`,
    {
      suggestions: [
        'Let it finish, then run this again. A lock left by a killed run is taken over once its holder is gone (a few seconds after its heartbeat stops, on another host).',
      ],
    },
  )

/** What to lock for a target: lock files (their path and what they protect), or a database. Pure. */
export function targetLockFiles(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  dataDir: string,
): Array<{file: string; where: string}> {
  const files: Array<{file: string; where: string}> = []
  if (target.kind === 'app-data') files.push({file: join(target.dir, TARGET_LOCK), where: target.dir})
  if (target.kind === 'sqlite') files.push({file: `${target.path}.mlflowctl-lock`, where: target.path})
  if (target.kind === 'connect')
    files.push({file: join(dataDir, 'locks', `connect-${target.guid}.lock`), where: `connect:${target.guid}`})
  if (artifactsTo && !isObjectStoreUrl(artifactsTo) && (target.kind === 'sqlite' || target.kind === 'postgresql'))
    files.push({file: join(dirname(artifactsTo), `.${basename(artifactsTo)}.mlflowctl-lock`), where: artifactsTo})
  return files
}

/** Holds PostgreSQL's advisory lock on its own connection until the returned release. @throws TARGET_LOCKED */
function lockPostgres(url: string, display: string, purpose: string): Promise<() => Promise<void>> {
  return new Promise((taken, refused) => {
    let letGo!: () => void
    const released = new Promise<void>((resolve) => (letGo = resolve))
    const session = withPostgres(parseDatabaseUrl(url), async (client) => {
      await client.query('SELECT set_config($1, $2, false)', [
        'application_name',
        `mlflowctl ${purpose} (pid ${process.pid})`,
      ])
      const got = (await client.query<{got: boolean}>('SELECT pg_try_advisory_lock($1) AS got', [POSTGRES_TARGET_LOCK]))
        .rows[0].got
      if (!got) {
        const holder = (
          await client.query<{name: string; since: Date | null; addr: string | null}>(
            `SELECT a.application_name AS name, a.backend_start AS since, host(a.client_addr) AS addr
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`,
            [POSTGRES_TARGET_LOCK],
          )
        ).rows[0]
        throw targetLocked(
          display,
          holder
            ? `${holder.name || 'a session'} from ${holder.addr ?? 'a local socket'}, since ${holder.since?.toISOString() ?? '?'}`
            : 'a session that holds its advisory lock',
        )
      }
      taken(async () => {
        letGo()
        await session.catch(() => undefined)
      })
      await released
      await client.query('SELECT pg_advisory_unlock($1)', [POSTGRES_TARGET_LOCK]).catch(() => undefined)
    })
    session.catch(refused)
  })
}

/** Locks held by this process, so that its safety backup (a backup of the same target) does not refuse itself. */
const held = new Map<string, {count: number; release: () => Promise<void>}>()

async function reentrant(key: string, take: () => Promise<() => Promise<void>>): Promise<() => Promise<void>> {
  const existing = held.get(key)
  if (existing) existing.count++
  else held.set(key, {count: 1, release: await take()})
  let done = false
  return async () => {
    if (done) return
    done = true
    const entry = held.get(key)!
    if (--entry.count > 0) return
    held.delete(key)
    await entry.release()
  }
}

/**
 * Locks a restore target (and a local --artifacts-to tree) for this process until the returned release; taking it
 * again in the same process only counts. `purpose` says who holds it ("restore", "backup").
 * @throws ExternalError TARGET_LOCKED while another run holds it; DISK_FULL, PATH_UNUSABLE
 */
export async function lockTarget(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  options: {dataDir: string; purpose: string; onWarning(message: string): void},
): Promise<() => Promise<void>> {
  const {dataDir, purpose} = options
  await checkTargetKind(target, artifactsTo)
  const releases: Array<() => Promise<void>> = []
  const releaseAll = async () => {
    for (const release of releases.reverse()) await release()
  }
  try {
    if (target.kind === 'postgresql')
      releases.push(
        await reentrant(`postgresql ${target.url}`, () => lockPostgres(target.url, target.display, purpose)),
      )
    for (const {file, where} of targetLockFiles(target, artifactsTo, dataDir)) {
      await makeDirs(dirname(file))
      releases.push(
        await reentrant(file, () =>
          lockFile(file, {where, purpose, onStale: options.onWarning, held: (holder) => targetLocked(where, holder)}),
        ),
      )
    }
  } catch (error) {
    await releaseAll()
    throw error
  }
  return releaseAll
}
