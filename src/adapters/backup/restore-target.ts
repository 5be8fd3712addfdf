// The target side of a restore on this machine: what a target holds (and whether the path is of the right
// kind), its scratch space, and the recovery of restores that a kill interrupted.
import {open, readdir, rename, rm, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import type {RestoreScratch, RestoreTarget, TargetInspection} from '../../core/backup/restore.js'
import {settleCommands} from '../../core/backup/locations.js'
import {KNOWN_MLFLOW_TABLES} from '../../core/backup/tables.js'
import {parseDatabaseUrl} from '../../core/database-url.js'
import {formatBytes} from '../../core/units.js'
import {ExternalError, UsageError, type MlflowctlError} from '../../errors.js'
import {withPostgres} from '../db/postgres.js'
import {SCRATCH_DIR, deadRuns, openScratch, removeRuns} from '../fs/scratch.js'
import {makeDirs, pathKind} from '../fs/safe-fs.js'
import {journalIn, recoverSwap, type ExternalCommit, type KeepChoice} from '../fs/swap.js'
import {NO_CONNECT, connectHasData, type ConnectTransferOptions} from '../connect/ops-client.js'
import {countObjects} from './artifact-upload.js'
import {isObjectStoreUrl} from '../../core/artifact-url.js'

const SQLITE_HEADER = 'SQLite format 3\0'
/** The lock file inside an app-data directory (target-lock.ts): never data, a restore and a backup leave it alone. */
export const TARGET_LOCK = '.mlflowctl-target.lock'
/** Entries of an app-data directory that are not data a restore replaces: the extension's state, our scratch. */
const NOT_DATA = new Set([SCRATCH_DIR, 'mlflowctl', TARGET_LOCK])

/** Where this run's scratch space goes for a target, first the database's tree, then the artifacts'. */
export function scratchRoots(target: RestoreTarget, artifactsTo: string | undefined, dataDir: string): string[] {
  const ownScratch = join(dataDir, 'restore')
  // An object-store prefix has no tree to stage in: its artifacts are uploaded from the database's scratch space.
  if (artifactsTo && isObjectStoreUrl(artifactsTo)) return scratchRoots(target, undefined, dataDir)
  if (target.kind === 'app-data') return [target.dir]
  if (target.kind === 'sqlite')
    return [...new Set([dirname(target.path), ...(artifactsTo ? [dirname(artifactsTo)] : [])])]
  if (target.kind === 'postgresql') return [artifactsTo ? dirname(artifactsTo) : ownScratch]
  return [ownScratch]
}

async function sqliteHeader(path: string): Promise<string> {
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.alloc(16)
    const {bytesRead} = await handle.read(buffer, 0, 16, 0)
    return buffer.subarray(0, bytesRead).toString('latin1')
  } finally {
    await handle.close()
  }
}

async function describeEntry(dir: string, name: string): Promise<string> {
  const info = await stat(join(dir, name)).catch(() => undefined)
  if (!info) return name
  return info.isDirectory() ? `${name}/` : `${name} (${formatBytes(info.size)})`
}

/**
 * Refuses a target path of the wrong kind (a file for an app-data directory, a directory or a file that is not SQLite
 * for a SQLite target, a file for --artifacts-to), before anything is created or locked. Reads only.
 * @throws UsageError TARGET_INVALID
 */
export async function checkTargetKind(target: RestoreTarget, artifactsTo: string | undefined): Promise<void> {
  if (target.kind === 'app-data') {
    const kind = await pathKind(target.dir)
    if (kind === 'file') {
      const hint =
        (await sqliteHeader(target.dir).catch(() => '')) === SQLITE_HEADER
          ? ` It is a SQLite database: pass --to sqlite:///${target.dir}.`
          : ''
      throw new UsageError(
        'TARGET_INVALID',
        `--to ${target.dir} is a file, not an app-data directory; nothing was changed.${hint}`,
      )
    }
    if (kind === 'other')
      throw new UsageError(
        'TARGET_INVALID',
        `--to ${target.dir} is neither a directory nor a file; nothing was changed.`,
      )
  }
  if (target.kind === 'sqlite') {
    const kind = await pathKind(target.path)
    if (kind === 'dir')
      throw new UsageError(
        'TARGET_INVALID',
        `--to sqlite:///${target.path} is a directory, not a database file; nothing was changed. For an app-data directory pass --to ${target.path}.`,
      )
    if (kind === 'other')
      throw new UsageError(
        'TARGET_INVALID',
        `--to sqlite:///${target.path} is not a regular file; nothing was changed.`,
      )
    if (kind === 'file' && (await stat(target.path)).size > 0 && (await sqliteHeader(target.path)) !== SQLITE_HEADER)
      throw new UsageError(
        'TARGET_INVALID',
        `${target.path} is not a SQLite database; refusing to replace it, even with --force. Nothing was changed.`,
      )
  }
  if (artifactsTo && !isObjectStoreUrl(artifactsTo) && (target.kind === 'sqlite' || target.kind === 'postgresql')) {
    const kind = await pathKind(artifactsTo)
    if (kind === 'file' || kind === 'other')
      throw new UsageError('TARGET_INVALID', `--artifacts-to ${artifactsTo} is not a directory; nothing was changed.`)
  }
}

async function inspectAppData(dir: string): Promise<TargetInspection> {
  if ((await pathKind(dir)) === 'missing') return {holdsData: false, found: [], foreign: []}
  const names = (await readdir(dir)).sort()
  const found: string[] = []
  const foreign: string[] = []
  for (const name of names) {
    if (NOT_DATA.has(name)) continue
    if (name === 'artifacts' && (await readdir(join(dir, name)).catch(() => ['?'])).length === 0) continue
    if (name === 'mlflow.db' && (await stat(join(dir, name))).size === 0) continue
    const mlflows = name === 'artifacts' || /^mlflow\.db(-wal|-shm|-journal)?$/.test(name)
    found.push(await describeEntry(dir, name))
    if (!mlflows) foreign.push(await describeEntry(dir, name).then((text) => text.replace(/ \(.*\)$/, '')))
  }
  // The parent of the data directory (a common slip): point at the child that holds mlflow.db.
  let didYouMean: string | undefined
  if (!names.includes('mlflow.db')) {
    for (const name of names)
      if ((await stat(join(dir, name, 'mlflow.db')).catch(() => undefined))?.isFile()) didYouMean ??= join(dir, name)
  }
  return {holdsData: found.length > 0, found, foreign, didYouMean}
}

async function inspectSqlite(path: string): Promise<TargetInspection> {
  const found: string[] = []
  if ((await pathKind(path)) === 'file' && (await stat(path)).size > 0) {
    found.push(await describeEntry(dirname(path), path.slice(dirname(path).length + 1)))
  }
  for (const suffix of ['-wal', '-journal'])
    if ((await pathKind(`${path}${suffix}`)) === 'file' && (await stat(`${path}${suffix}`)).size > 0)
      found.push(`${path.slice(dirname(path).length + 1)}${suffix}`)
  return {holdsData: found.length > 0, found, foreign: []}
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
  let inspection: TargetInspection
  if (target.kind === 'app-data') inspection = await inspectAppData(target.dir)
  else if (target.kind === 'sqlite') inspection = await inspectSqlite(target.path)
  else if (target.kind === 'connect')
    inspection = {
      holdsData: await connectHasData(connect ?? NO_CONNECT, target.guid),
      found: ['MLflow data'],
      foreign: [],
    }
  else {
    // MLflow's tables only: another application's tables in the same database are not MLflow data.
    const names = await withPostgres(parseDatabaseUrl(target.url), async (client) =>
      (
        await client.query<{name: string}>(
          "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'alembic_version'",
        )
      ).rows.map((row) => row.name),
    )
    const mlflows = names.filter((name) => KNOWN_MLFLOW_TABLES.has(name))
    inspection = {holdsData: mlflows.length > 0, found: [`${mlflows.length} MLflow tables`], foreign: []}
  }
  if (artifactsTo && isObjectStoreUrl(artifactsTo) && (target.kind === 'sqlite' || target.kind === 'postgresql'))
    return {...inspection, objectsAtArtifactsTo: await countObjects(artifactsTo)}
  const artifacts =
    target.kind === 'sqlite' || target.kind === 'postgresql'
      ? artifactsTo
        ? await inspectArtifactsDir(artifactsTo)
        : []
      : []
  if (artifacts.length === 0) return inspection
  return {...inspection, holdsData: true, found: [...(inspection.holdsData ? inspection.found : []), ...artifacts]}
}

/** Whether PostgreSQL committed the swap that carries `mark` (alembic_version's comment). */
export async function postgresCommitted(url: string, mark: string): Promise<boolean> {
  return withPostgres(parseDatabaseUrl(url), async (client) => {
    const row = (
      await client.query<{comment: string | null}>(
        "SELECT obj_description(to_regclass('alembic_version'), 'pg_class') AS comment",
      )
    ).rows[0]
    return row?.comment === mark
  })
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
  const live = target.kind === 'app-data' ? target.dir : target.kind === 'sqlite' ? target.path : undefined
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
  if (target.kind === 'app-data') messages.push(...(await recoverLegacy(target.dir)))
  if (target.kind === 'sqlite') messages.push(...(await recoverLegacy(target.path)))
  const committed = async (database: ExternalCommit) =>
    target.kind === 'postgresql' && database.display === target.display
      ? postgresCommitted(target.url, database.mark)
      : undefined
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
  if (target.kind === 'app-data') await makeDirs(target.dir)
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
