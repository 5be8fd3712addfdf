// The lock on what a restore replaces: one restore at a time per target, whatever its kind, and no backup
// recovering an interrupted restore while another restore works there. Files and directories are locked by a
// lock file beside what they protect (a lease, adapters/lock.ts); PostgreSQL by an advisory lock held on its own
// connection, which the server releases when the connection dies with its process; a Connect deployment by a
// lock file in this machine's data directory (the extension refuses a second upload on its side too).
import {basename, dirname, join} from 'node:path'

import type {RestoreTarget} from '../../core/backup/restore.js'
import {makeDirs} from '../fs/safe-fs.js'
import {lockFile} from '../lock.js'
import {checkTargetKind} from './restore-target.js'
import {localArtifactsTo, targetSite} from './targets/index.js'
import {targetLocked} from './targets/site.js'

/** What to lock for a target: lock files (their path and what they protect), or a database. Pure. */
export function targetLockFiles(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  dataDir: string,
): Array<{file: string; where: string}> {
  const site = targetSite(target)
  const files = site.lockFiles(dataDir)
  const localArtifacts = localArtifactsTo(site, artifactsTo)
  if (localArtifacts)
    files.push({
      file: join(dirname(localArtifacts), `.${basename(localArtifacts)}.mlflowctl-lock`),
      where: localArtifacts,
    })
  return files
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
    const site = targetSite(target)
    const database = site.databaseLock
    if (database) releases.push(await reentrant(database.key, () => database.take(purpose)))
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
