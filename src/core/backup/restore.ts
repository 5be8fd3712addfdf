/**
 * `backup restore`: verify the whole archive while extracting it to scratch space, then build the target
 * beside the live one and swap it in, so that a failure at any point leaves the target as it was.
 * The schema is created by real MLflow at the backup's revision (a managed venv); the extension's normal
 * startup upgrades it to its own head afterwards.
 */
import {ConfigError, UsageError} from '../../errors.js'
import type {HistoryEvent} from '../history.js'
import type {BackupSourceSpec} from './create.js'
import type {BackupManifest} from './format.js'
import {parseGuid} from './locations.js'

/** Anything a backup can be taken from can be restored into, which is what makes the safety backup possible. */
export type RestoreTarget = BackupSourceSpec

/** @throws UsageError TARGET_NOT_SUPPORTED for SQL Server and connect:GUID (not implemented yet) */
export function parseRestoreTarget(raw: string, resolvePath: (path: string) => string, redactUrl: (url: string) => string): RestoreTarget {
  if (raw.startsWith('sqlite:///')) {
    const path = decodeURIComponent(raw.slice('sqlite:///'.length))
    if (!path.startsWith('/')) throw new UsageError('TARGET_INVALID', `--to ${raw}: SQLite needs an absolute path (sqlite:////abs/path/mlflow.db).`)
    return {kind: 'sqlite', path}
  }
  if (/^postgres(ql)?(\+\w+)?:\/\//.test(raw)) return {kind: 'postgresql', url: raw, display: redactUrl(raw)}
  if (raw.startsWith('connect:')) return {kind: 'connect', guid: parseGuid(raw, '--to')}
  if (/^mssql/.test(raw)) throw new UsageError('TARGET_NOT_SUPPORTED', `--to ${redactUrl(raw)}: restoring into SQL Server is not implemented yet; restore into an app-data directory, SQLite, PostgreSQL or connect:GUID.`)
  return {kind: 'app-data', dir: resolvePath(raw)}
}

export interface RestoreOptions {
  archive: string
  target: RestoreTarget
  /** Where artifacts go for SQLite and PostgreSQL targets (an app-data target has its own artifacts/). */
  artifactsTo?: string
  force: boolean
  /** connect: swap the data in at its own revision and hold the running bundle (upgrade rollback). */
  keepRevision?: boolean
}

export interface RestoreResult {
  backupId: string
  target: string
  revision: string
  tables: number
  rows: number
  artifactFiles: number
  safetyBackup?: string
  warnings: string[]
}

export interface RestoreDeps {
  scratch(): Promise<{path: string; remove(): Promise<void>}>
  /** Verifies every entry against the manifest while writing it under `dir`. @throws CheckFailedError BACKUP_CORRUPT */
  extractVerified(archive: string, dir: string): Promise<BackupManifest>
  /** True when the target holds data (a non-empty mlflow.db or artifacts, or tables). */
  targetHasData(target: RestoreTarget): Promise<boolean>
  /** A backup of the target before --force replaces it; returns its archive path. */
  safetyBackup(target: RestoreTarget): Promise<string>
  /** Creates the schema at `revision` with real MLflow and loads the tables; the target must be empty, unless
   * `replace` (after a safety backup): MLflow's tables are replaced, other tables stay. */
  loadDatabase(url: string, revision: string, dbDir: string, replace?: boolean): Promise<{tables: number; rows: number}>
  /** Moves (or copies across file systems) a directory's files into `to`. Returns the number of files. */
  moveTree(from: string, to: string): Promise<number>
  /** Streams a prepared app-data directory to the deployment's POST /_mlflowctl/restore (it migrates and swaps). */
  uploadToConnect(guid: string, dir: string, force: boolean, keepRevision?: boolean): Promise<{revision: string; artifactFiles: number}>
  makeDir(path: string): Promise<void>
  exists(path: string): Promise<boolean>
  rename(from: string, to: string): Promise<void>
  remove(path: string): Promise<void>
  confirm(question: string): Promise<boolean>
  appendHistory(event: HistoryEvent): Promise<void>
  join(...parts: string[]): string
  now(): Date
}

const describe = (target: RestoreTarget) => (target.kind === 'app-data' ? target.dir : target.kind === 'sqlite' ? `sqlite:///${target.path}` : target.kind === 'connect' ? `connect:${target.guid}` : target.display)

export async function restoreBackup(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const warnings: string[] = []
  const target = options.target
  if (await deps.targetHasData(target)) {
    if (!options.force) throw new UsageError('TARGET_NOT_EMPTY', `${describe(target)} already holds MLflow data.`, {suggestions: ['Restore into an empty target, or pass --force (a safety backup of the target is taken first).']})
    if (!(await deps.confirm(`Replace the data in ${describe(target)}? A safety backup is taken first.`))) throw new UsageError('CANCELLED_BY_USER', 'Nothing changed.')
  }
  const scratch = await deps.scratch()
  let staging: string | undefined
  try {
    const manifest = await deps.extractVerified(options.archive, scratch.path)
    if (!manifest.alembicRevision) throw new ConfigError('BACKUP_WITHOUT_SCHEMA', `Backup ${manifest.id} has no alembic revision: it is not an MLflow database backup.`)
    const revision = manifest.alembicRevision
    const dbDir = deps.join(scratch.path, 'db')
    const artifactsDir = deps.join(scratch.path, 'artifacts')
    const safetyBackup = options.force && (await deps.targetHasData(target)) ? await deps.safetyBackup(target) : undefined
    let loaded: {tables: number; rows: number}
    let artifactFiles = 0
    const stamp = `${manifest.id}-${deps.now().getTime()}`
    if (target.kind === 'postgresql') {
      // Built in a staging schema and swapped in with one transaction by the loader (restore_db.py).
      loaded = await deps.loadDatabase(target.url, revision, dbDir, Boolean(safetyBackup))
    } else if (target.kind === 'connect') {
      // Built in scratch space, then swapped in by the extension itself, under maintenance.
      const upload = deps.join(scratch.path, 'upload')
      await deps.makeDir(upload)
      loaded = await deps.loadDatabase(`sqlite:///${deps.join(upload, 'mlflow.db')}`, revision, dbDir)
      if (await deps.exists(artifactsDir)) await deps.moveTree(artifactsDir, deps.join(upload, 'artifacts'))
      const answer = await deps.uploadToConnect(target.guid, upload, Boolean(safetyBackup), options.keepRevision)
      artifactFiles = answer.artifactFiles
    } else if (target.kind === 'sqlite') {
      staging = `${target.path}.restoring-${stamp}`
      loaded = await deps.loadDatabase(`sqlite:///${staging}`, revision, dbDir)
      await deps.rename(staging, target.path) // atomic on one file system
      staging = undefined
    } else {
      // Built beside the target (same file system), then swapped in with two renames.
      staging = `${target.dir}.restoring-${stamp}`
      await deps.makeDir(staging)
      loaded = await deps.loadDatabase(`sqlite:///${deps.join(staging, 'mlflow.db')}`, revision, dbDir)
      artifactFiles = (await deps.exists(artifactsDir)) ? await deps.moveTree(artifactsDir, deps.join(staging, 'artifacts')) : 0
      const replaced = `${target.dir}.replaced-${stamp}`
      const hadTarget = await deps.exists(target.dir)
      if (hadTarget) await deps.rename(target.dir, replaced)
      await deps.rename(staging, target.dir)
      staging = undefined
      if (hadTarget) await deps.remove(replaced)
    }
    if (target.kind === 'sqlite' || target.kind === 'postgresql') {
      if (options.artifactsTo && (await deps.exists(artifactsDir))) artifactFiles = await deps.moveTree(artifactsDir, options.artifactsTo)
      else if (manifest.artifacts.files > 0) warnings.push(`${manifest.artifacts.files} artifact files were not restored: pass --artifacts-to DIR (the server's MLFLOW_ARTIFACTS_DESTINATION).`)
    }
    await deps.appendHistory({v: 1, time: deps.now().toISOString(), action: 'restore', result: 'ok', server: target.kind === 'app-data' || target.kind === 'sqlite' ? `file://${describe(target)}` : describe(target), revision, message: `${manifest.id} into ${describe(target)}`})
    return {backupId: manifest.id, target: describe(target), revision, tables: loaded.tables, rows: loaded.rows, artifactFiles, safetyBackup, warnings}
  } finally {
    if (staging) await deps.remove(staging)
    await scratch.remove()
  }
}
