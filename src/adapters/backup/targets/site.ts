// What a restore target is on this machine, per kind: where scratch space goes, which path kinds are refused, what
// it holds, what locks it, and what older restores may have left beside it. restore-target.ts and target-lock.ts
// ask the site once (index.ts) and never ask for the kind again.
import {open, stat} from 'node:fs/promises'
import {join} from 'node:path'

import type {TargetInspection} from '../../../core/backup/restore.js'
import {isObjectStoreUrl} from '../../../core/artifact-url.js'
import {formatBytes} from '../../../core/units.js'
import {ExternalError} from '../../../errors.js'
import {describeHolder} from '../../lock.js'
import type {LeaseHolder} from '../../fs/lease.js'
import type {ConnectTransferOptions} from '../../connect/ops-client.js'
import type {ExternalCommit} from '../../fs/swap.js'

export interface TargetSite {
  /** Where this run's scratch space goes: in the database's own tree, so that the swap is a rename (a database
   * elsewhere: the local --artifacts-to tree, else this machine's data directory). */
  scratchRoot(dataDir: string, localArtifactsTo: string | undefined): string
  /** Whether the target is a database only, so that --artifacts-to says where its artifacts go. */
  takesArtifactsTo: boolean
  /** Refuses a path of the wrong kind, before anything is created or locked. Reads only. @throws TARGET_INVALID */
  checkKind(): Promise<void>
  /** What the target's database side holds. Reads only. */
  inspect(connect: ConnectTransferOptions | undefined): Promise<TargetInspection>
  /** Lock files beside what they protect (`where`, as messages name it). */
  lockFiles(dataDir: string): Array<{file: string; where: string}>
  /** A lock the database itself holds (PostgreSQL's advisory lock), besides the lock files; `key` names it within
   * this process, which may take it again (its safety backup). */
  databaseLock?: {key: string; take(purpose: string): Promise<() => Promise<void>>}
  /** The path older restores left their copies beside (TARGET.restoring-…, TARGET.replaced-…). */
  legacyLive?: string
  /** Whether the database committed a swap recorded in a journal (undefined: not this target's database). */
  committed?(database: ExternalCommit): Promise<boolean | undefined>
  /** Made before scratch space is opened in it. */
  ensureDir?: string
  /** What the safety backup of a --force restore is named after: its repository is a sibling of this path. */
  safetyBackupOf(dataDir: string): string
}

export const SQLITE_HEADER = 'SQLite format 3\0'

export async function sqliteHeader(path: string): Promise<string> {
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.alloc(16)
    const {bytesRead} = await handle.read(buffer, 0, 16, 0)
    return buffer.subarray(0, bytesRead).toString('latin1')
  } finally {
    await handle.close()
  }
}

export async function describeEntry(dir: string, name: string): Promise<string> {
  const info = await stat(join(dir, name)).catch(() => undefined)
  if (!info) return name
  return info.isDirectory() ? `${name}/` : `${name} (${formatBytes(info.size)})`
}

/** Scratch space of targets without a tree of their own on this machine. */
export const ownScratch = (dataDir: string) => join(dataDir, 'restore')

export const targetLocked = (where: string, holder: LeaseHolder | string) =>
  new ExternalError(
    'TARGET_LOCKED',
    `Another run is working on ${where} (${typeof holder === 'string' ? holder : describeHolder(holder)}); nothing was changed.`,
    {
      suggestions: [
        'Let it finish, then run this again. A lock left by a killed run is taken over once its holder is gone (a few seconds after its heartbeat stops, on another host).',
      ],
    },
  )

/**
 * --artifacts-to when it is a tree on this machine that the restore replaces (a database-only target's), else
 * undefined: an object-store prefix is only uploaded into, and other targets keep their artifacts themselves.
 */
export function localArtifactsTo(site: TargetSite, artifactsTo: string | undefined): string | undefined {
  return site.takesArtifactsTo && artifactsTo && !isObjectStoreUrl(artifactsTo) ? artifactsTo : undefined
}
