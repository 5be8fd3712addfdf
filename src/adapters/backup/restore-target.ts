// The target side of a restore on this machine: what a target holds (and whether the path is of the right
// kind), its scratch space, and the recovery of restores that a kill interrupted.
import {readdir, rename, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {isObjectStoreUrl} from '../../core/artifact-url.js'
import type {RestoreScratch, RestoreTarget, TargetInspection} from '../../core/backup/restore.js'
import {settleCommands} from '../../core/backup/locations.js'
import {ExternalError, UsageError, type MlflowctlError} from '../../errors.js'
import type {ConnectTransferOptions} from '../connect/ops-client.js'
import {SCRATCH_DIR, deadRuns, openScratch, removeRuns} from '../fs/scratch.js'
import {makeDirs, pathKind} from '../fs/safe-fs.js'
import {journalIn, recoverSwap, type ExternalCommit, type KeepChoice} from '../fs/swap.js'
import {countObjects} from './artifact-upload.js'
import {localArtifactsTo, targetSite} from './targets/index.js'

/** Where this run's scratch space goes for a target, first the database's tree, then the artifacts'. */
export function scratchRoots(target: RestoreTarget, artifactsTo: string | undefined, dataDir: string): string[] {
  const site = targetSite(target)
  // An object-store prefix has no tree to stage in: its artifacts are uploaded from the database's scratch space.
  const localArtifacts = localArtifactsTo(site, artifactsTo)
  return [...new Set([site.scratchRoot(dataDir, localArtifacts), ...(localArtifacts ? [dirname(localArtifacts)] : [])])]
}

/**
 * Refuses a target path of the wrong kind (a file for an app-data directory, a directory or a file that is not SQLite
 * for a SQLite target, a file for --artifacts-to), before anything is created or locked. Reads only.
 * @throws UsageError TARGET_INVALID
 */
export async function checkTargetKind(target: RestoreTarget, artifactsTo: string | undefined): Promise<void> {
  const site = targetSite(target)
  await site.checkKind()
  const localArtifacts = localArtifactsTo(site, artifactsTo)
  if (localArtifacts) {
    const kind = await pathKind(localArtifacts)
    if (kind === 'file' || kind === 'other')
      throw new UsageError('TARGET_INVALID', `--artifacts-to ${artifactsTo} is not a directory; nothing was changed.`)
  }
}

async function inspectArtifactsDir(dir: string): Promise<string[]> {
  if ((await pathKind(dir)) === 'missing') return []
  const entries = (await readdir(dir)).filter((name) => name !== SCRATCH_DIR)
  return entries.length > 0 ? [`${entries.length} entries in --artifacts-to ${dir}`] : []
}

/** What the target holds. Reads only. @throws UsageError TARGET_INVALID */
export async function inspectTarget(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  connect: ConnectTransferOptions | undefined,
): Promise<TargetInspection> {
  await checkTargetKind(target, artifactsTo)
  const site = targetSite(target)
  const inspection = await site.inspect(connect)
  if (!site.takesArtifactsTo || !artifactsTo) return inspection
  if (isObjectStoreUrl(artifactsTo)) return {...inspection, objectsAtArtifactsTo: await countObjects(artifactsTo)}
  const artifacts = await inspectArtifactsDir(artifactsTo)
  if (artifacts.length === 0) return inspection
  return {...inspection, holdsData: true, found: [...(inspection.holdsData ? inspection.found : []), ...artifacts]}
}

/**
 * What restores of mlflowctl before the journal left beside a target (TARGET.restoring-STAMP: a half-built new
 * copy; TARGET.replaced-STAMP: the old data, renamed aside before the new was renamed in). A missing target gets its
 * old data back; a half-built copy goes; an old copy beside a present target is named, never deleted.
 */
async function legacyLeftovers(live: string): Promise<string[]> {
  const dir = dirname(live)
  const base = live.slice(dir.length + 1)
  // The old stamp: BACKUP_ID-MILLISECONDS (20261128T061500Z-ab12cd-1764310500000).
  const legacy = /^\.(restoring|replaced)-\d{8}T\d{6}Z-[0-9a-f]{6}-\d+$/
  return (await readdir(dir).catch(() => [] as string[]))
    .filter((name) => name.startsWith(base) && legacy.test(name.slice(base.length)))
    .sort()
}

async function recoverLegacy(live: string): Promise<string[]> {
  const messages: string[] = []
  const dir = dirname(live)
  const base = live.slice(dir.length + 1)
  for (const name of await legacyLeftovers(live)) {
    const path = join(dir, name)
    if (name.startsWith(`${base}.restoring-`)) {
      await rm(path, {recursive: true, force: true})
      messages.push(`removed ${path}, a half-built restore left by a killed run`)
    } else if ((await pathKind(live)) === 'missing') {
      await rename(path, live)
      messages.push(`put back ${live} from ${path}: a killed restore had moved it aside`)
    } else
      messages.push(
        `${path} holds data an interrupted restore moved aside; ${live} was restored since. Compare them, then remove the one you do not need.`,
      )
  }
  return messages
}

/**
 * Whether anything of an earlier restore is left under the target's scratch roots or beside it (a run directory,
 * a legacy copy): only then does recovery need the target's lock, so a backup of a read-only source stays possible.
 * Reads only.
 */
export async function recoveryMayBeNeeded(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  dataDir: string,
): Promise<boolean> {
  for (const root of scratchRoots(target, artifactsTo, dataDir))
    if ((await readdir(join(root, SCRATCH_DIR)).catch(() => [] as string[])).length > 0) return true
  const live = targetSite(target).legacyLive
  return live !== undefined && (await legacyLeftovers(live)).length > 0
}

/**
 * Finishes or undoes dead runs' swaps under the target's scratch roots, then removes their scratch. A swap whose
 * target was written to since is settled only by `keep`; without it, RECOVERY_CONFLICT names the commands.
 * @throws ExternalError RECOVERY_CONFLICT (nothing touched, the dead run's scratch kept)
 */
export async function recoverTarget(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  dataDir: string,
  keep?: KeepChoice,
): Promise<string[]> {
  const messages: string[] = []
  const site = targetSite(target)
  if (site.legacyLive) messages.push(...(await recoverLegacy(site.legacyLive)))
  const committed = async (database: ExternalCommit) => site.committed?.(database)
  for (const root of scratchRoots(target, artifactsTo, dataDir)) {
    const removable: string[] = []
    for (const run of await deadRuns(root)) {
      const message = await recoverSwap(journalIn(run), committed, keep).catch((error: MlflowctlError) =>
        Promise.reject(
          error.code === 'RECOVERY_CONFLICT' && !keep
            ? new ExternalError(error.code, error.message, {suggestions: settleCommands(target, artifactsTo)})
            : error,
        ),
      )
      if (message) messages.push(message)
      if (!message?.includes('is pending')) removable.push(run)
    }
    for (const run of await removeRuns(removable)) messages.push(`removed the scratch space of a killed run: ${run}`)
  }
  return messages
}

/** This run's scratch space in the target's tree (created, 0700), and in the artifacts' tree when that differs. */
export async function openRestoreScratch(
  target: RestoreTarget,
  artifactsTo: string | undefined,
  dataDir: string,
): Promise<RestoreScratch> {
  const [root, artifactsRoot] = scratchRoots(target, artifactsTo, dataDir)
  const ensureDir = targetSite(target).ensureDir
  if (ensureDir) await makeDirs(ensureDir)
  const main = await openScratch(root)
  const second = artifactsRoot
    ? await openScratch(artifactsRoot).catch(async (error) => Promise.reject((await main.remove(), error)))
    : undefined
  return {
    path: main.path,
    artifactsPath: second?.path,
    remove: async () => {
      await second?.remove()
      await main.remove()
    },
  }
}
