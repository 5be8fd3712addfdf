/**
 * `backup restore`: verify the whole archive while extracting it to scratch space in the target's own tree,
 * build the new data there, and swap it in through a journal, so that a failure or a kill at any point leaves
 * the target's old data or the new, never neither, and never a database without its artifacts. Nothing that
 * was there is deleted before the new data is in place and checked.
 * The schema is created by real MLflow at the backup's revision (a managed venv); the extension's normal
 * startup upgrades it to its own head afterwards.
 */
import {ConfigError, UsageError} from '../../errors.js'
import type {HistoryEvent} from '../history.js'
import {failureEvent, type BackupSourceSpec} from './create.js'
import {SQLITE_FILE_ENTRY, holdsSqliteFile, type BackupManifest} from './format.js'
import type {PrepareDatabase, PreparedDatabase} from './prepared-database.js'
import type {RestoredDatabase} from './deep-verify.js'
import {installKit, type RestoreTargetDriver} from './targets/index.js'
import {describeTarget, parseGuid} from './locations.js'

export {describeTarget}
import {isObjectStoreUrl} from '../artifact-url.js'
import type {LocationRewrite} from './artifact-locations.js'
import type {KeepChoice} from './recover.js'
import {foreignSchemaError, foreignTablesOf, gateSnapshot, revisionUnknown, withoutTables} from './restore-schema.js'
import {describeObject, type ExpectedSchema, type SchemaObject} from './schema-objects.js'

/** Anything a backup can be taken from can be restored into, which is what makes the safety backup possible. */
export type RestoreTarget = BackupSourceSpec

/** @throws UsageError TARGET_INVALID, TARGET_NOT_SUPPORTED (SQL Server) */
export function parseRestoreTarget(
  raw: string,
  resolvePath: (path: string) => string,
  redactUrl: (url: string) => string,
): RestoreTarget {
  if (raw.startsWith('sqlite:///')) {
    const path = decodeURIComponent(raw.slice('sqlite:///'.length))
    if (!path.startsWith('/'))
      throw new UsageError(
        'TARGET_INVALID',
        `--to ${raw}: SQLite needs an absolute path (sqlite:////abs/path/mlflow.db).`,
      )
    return {kind: 'sqlite', path}
  }
  if (/^postgres(ql)?(\+\w+)?:\/\//.test(raw)) return {kind: 'postgresql', url: raw, display: redactUrl(raw)}
  if (raw.startsWith('connect:')) return {kind: 'connect', guid: parseGuid(raw, '--to')}
  if (/^mssql/.test(raw))
    throw new UsageError(
      'TARGET_NOT_SUPPORTED',
      `--to ${redactUrl(raw)}: restoring into SQL Server is not implemented yet; restore into an app-data directory, SQLite, PostgreSQL or connect:GUID.`,
    )
  return {kind: 'app-data', dir: resolvePath(raw)}
}

/** What a restore reads: a backup (ID, latest or archive path) or a replica as of a moment. */
export type RestoreSource = {kind: 'backup'; ref: string} | {kind: 'replica'; dir: string; at?: number}

/**
 * `--at`: an ISO 8601 date and time with its zone (Z or ±hh:mm), not in the future; Unix seconds. A time without a zone
 * would be read in this machine's zone, and "0" as the year 2000: both are refused rather than guessed.
 * @throws UsageError INVALID_TIME. Pure.
 */
export function parseMoment(at: string, now: Date): number {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(at.trim()))
    throw new UsageError(
      'INVALID_TIME',
      `--at ${at} is not an ISO 8601 time with a zone: give the date, the time and Z (UTC) or an offset, for example 2026-12-04T10:15:00Z or 2026-12-04T11:15:00+01:00.`,
    )
  const moment = Date.parse(at.trim())
  // Date.parse rolls an impossible day over (February 30 becomes March 2): each field is checked against the calendar.
  const [year, month, day, hour, minute, second = 0] = at.trim().match(/\d+/g)!.slice(0, 6).map(Number)
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate()
  if (
    Number.isNaN(moment) ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  )
    throw new UsageError('INVALID_TIME', `--at ${at} is not a valid time.`)
  if (moment > now.getTime())
    throw new UsageError('INVALID_TIME', `--at ${at} is in the future; leave --at out to restore the newest moment.`)
  return moment / 1000
}

/** @throws UsageError USAGE (neither or both), INVALID_TIME. Pure. */
export function parseRestoreSource(
  backup: string | undefined,
  fromReplica: string | undefined,
  at: string | undefined,
  resolvePath: (path: string) => string,
  now: Date = new Date(),
): RestoreSource {
  if (backup && fromReplica)
    throw new UsageError('USAGE', `Restore either backup ${backup} or --from-replica ${fromReplica}, not both.`)
  if (!fromReplica) {
    if (!backup)
      throw new UsageError(
        'USAGE',
        'Name the backup to restore (an ID or latest with --repo, or an archive path), or --from-replica DIR.',
      )
    return {kind: 'backup', ref: backup}
  }
  return {
    kind: 'replica',
    // An object-store replica (s3://, wasbs://, gs://) is read as it is; a directory is made absolute.
    dir: isObjectStoreUrl(fromReplica) ? fromReplica : resolvePath(fromReplica),
    at: at === undefined ? undefined : parseMoment(at, now),
  }
}

export interface RestoreOptions {
  archive: string
  target: RestoreTarget
  /** Where artifacts go for SQLite and PostgreSQL targets (an app-data target has its own artifacts/). */
  artifactsTo?: string
  force: boolean
  /** connect: swap the data in at its own revision and hold the running bundle (upgrade rollback). */
  keepRevision?: boolean
  /** The backup as the user named it (an ID) and its repository, for suggestions that can be pasted as they are. */
  backupRef?: string
  repo?: string
  /** Keep absolute artifact locations as they are, even when the artifacts go to a new place. */
  keepArtifactLocations?: boolean
  /** Drop what MLflow's migrations do not create (triggers, views, other tables) instead of refusing the backup. */
  dropForeignObjects?: boolean
}

export interface RestoreResult {
  backupId: string
  target: string
  revision: string
  tables: number
  rows: number
  artifactFiles: number
  safetyBackup?: string
  /** Absolute artifact locations rewritten from the backup's artifact root to the new one (a restore that moves the store). */
  artifactLocations?: LocationRewrite
  /** What --drop-foreign-objects left out ("trigger x on experiments"). */
  droppedObjects?: string[]
  warnings: string[]
}

/** What a target holds before the restore. */
export interface TargetInspection {
  /** Anything a restore would replace or that suggests a wrong path: refused unless --force. */
  holdsData: boolean
  /** What was found, for the refusal ("mlflow.db (45.0 MiB)", "important.txt"). */
  found: string[]
  /** Entries that are not MLflow's: a restore never touches them, even with --force. */
  foreign: string[]
  /** A path nearby that looks like the intended target (a subdirectory holding mlflow.db). */
  didYouMean?: string
  /** Objects already under an object-store --artifacts-to prefix (a restore only uploads into an empty one). */
  objectsAtArtifactsTo?: number
}

/** One path the swap replaces: the live path, the new data built beside it, and where the old waits. */
export interface SwapEntry {
  live: string
  staged?: string
  aside: string
}

/** Scratch space of this run in the target's tree (artifacts: in the tree of --artifacts-to, when it has one). */
export interface RestoreScratch {
  path: string
  artifactsPath?: string
  remove(): Promise<void>
}

export interface RestoreDeps {
  /** Where the data comes from: an archive, verified while it is extracted, or a replica replayed into scratch space. */
  source: {
    /**
     * The manifest the archive must match (its sidecar, else a first read-only pass); a replica is replayed into
     * `workDir` here. @throws CheckFailedError BACKUP_CORRUPT, REPLICA_CORRUPT
     */
    expectedManifest(archive: string, workDir: string): Promise<BackupManifest>
    /**
     * Checks every entry against `expected` before and while writing it under `dir`; `onWritten` hears of each entry
     * once it is written and checked. @throws CheckFailedError BACKUP_CORRUPT
     */
    extractVerified(
      archive: string,
      dir: string,
      expected: BackupManifest,
      onWritten?: (name: string) => void,
    ): Promise<BackupManifest>
  }
  /**
   * The target: its driver (chosen in compose/), and what its site on this machine does: lock, recover, inspect,
   * scratch space, safety backup, and the steps that put new data in place.
   */
  target: {
    /** What the restore does differently for this kind of target (targets/index.ts `restoreDriver`, chosen in compose). */
    driver(target: RestoreTarget): RestoreTargetDriver
    /**
     * Locks the target (and a local --artifacts-to tree) until the returned release: one restore at a time.
     * @throws ExternalError TARGET_LOCKED while another run holds it
     */
    lock(target: RestoreTarget, artifactsTo?: string): Promise<() => Promise<void>>
    /**
     * Finishes or undoes interrupted restores of this target (their journals) and removes dead runs' scratch; one whose
     * target was written to since is settled only by `keep`. @throws ExternalError RECOVERY_CONFLICT
     */
    recover(target: RestoreTarget, artifactsTo?: string, keep?: KeepChoice): Promise<string[]>
    /** Reads only. @throws UsageError TARGET_INVALID when the path is of the wrong kind (a file for a directory) */
    inspect(target: RestoreTarget, artifactsTo?: string): Promise<TargetInspection>
    scratch(target: RestoreTarget, artifactsTo?: string): Promise<RestoreScratch>
    /** A backup of everything the restore replaces (artifacts-to included); returns its archive path. */
    safetyBackup(target: RestoreTarget, artifactsTo?: string): Promise<string>
    makeDir(path: string): Promise<void>
    /** Renames a file (within one file system: scratch space is in the target's tree). */
    moveFile(from: string, to: string): Promise<void>
    /** Moves a directory's files into a new directory `to` (created even when `from` is missing). Returns the count. */
    stageTree(from: string, to: string): Promise<number>
    /**
     * Uploads a directory's files under an empty object-store prefix (`--artifacts-to s3://…`); `undo` deletes them
     * again. @throws ExternalError ARTIFACTS_UPLOAD_FAILED (having deleted what it uploaded)
     */
    uploadArtifacts(from: string, to: string): Promise<{files: number; undo(): Promise<void>}>
    /** Swaps staged paths in through a journal kept in each of `journalDirs` (adapters/fs/swap.ts); undoes on failure. */
    swapIn(
      entries: SwapEntry[],
      options: {
        journalDirs: string[]
        check(): Promise<void>
        database?: {display: string; mark: string; commit(): Promise<void>}
      },
    ): Promise<void>
    /**
     * The swapped-in SQLite database opens, is at `revision` and, unless `checked` (format 2: the very file passed
     * integrity_check before the swap), passes quick_check.
     */
    checkSqlite(path: string, revision: string, checked?: boolean): Promise<void>
    /** Streams a prepared app-data directory to the deployment's POST /_mlflowctl/restore (it migrates and swaps). */
    uploadToConnect(
      guid: string,
      dir: string,
      force: boolean,
      keepRevision?: boolean,
    ): Promise<{revision: string; artifactFiles: number}>
  }
  /** Real MLflow and SQLite's tools: the schema at a revision, the rows loaded, checked and rewritten. */
  loader: {
    /**
     * Starts real MLflow on a target that must be empty, unless `replace` (after a safety backup): it creates the
     * schema at `revision` (PostgreSQL: in a staging schema), without seeded rows, keys or indexes; the rows are
     * loaded later from `dbDir` (which the archive may still be filling) or a SQLite file.
     */
    prepareDatabase: PrepareDatabase
    /** What MLflow's migrations make at `revision`, or undefined when the MLflow this tool restores with does not know it. */
    expectedSchema(revision: string): Promise<ExpectedSchema | undefined>
    /** SQLite's quick_check and foreign-key check and the row counts of a database file (verify --deep runs the
     * slower integrity_check). Reads only. */
    inspectSqlite(
      file: string,
    ): Promise<Pick<RestoredDatabase, 'integrity' | 'foreignKeyViolations' | 'rowCounts' | 'objects'>>
    /** Drops objects from the backup's SQLite file in scratch space. */
    dropSqliteObjects(file: string, objects: SchemaObject[]): Promise<void>
    /** Takes tables out of extracted table files (their files, and schema.json's list). */
    dropTableFiles(dbDir: string, tables: string[]): Promise<void>
    /** Rows per table of a SQLite file. Reads only. */
    countSqliteRows(file: string): Promise<Record<string, number>>
    /** Rewrites artifact locations in the extracted table files under `dbDir`; returns "table.column" → rows changed. */
    rewriteArtifactLocations(dbDir: string, from: string, to: string): Promise<Record<string, number>>
    /** The same, in a SQLite file (format 2). */
    rewriteArtifactLocationsInSqlite(file: string, from: string, to: string): Promise<Record<string, number>>
  }
  clock: {
    now(): Date
    randomId(): string
  }
  confirm(question: string): Promise<boolean>
  history: {
    append(event: HistoryEvent): Promise<void>
  }
  paths: {
    join(...parts: string[]): string
    dirname(path: string): string
  }
}

/** The refusal of a target that holds data, with the command that proceeds. Pure. */
export function targetNotEmpty(
  driver: Pick<RestoreTargetDriver, 'describe' | 'asArgument'>,
  target: RestoreTarget,
  inspection: TargetInspection,
  options: Pick<RestoreOptions, 'repo' | 'artifactsTo' | 'backupRef' | 'archive'>,
): UsageError {
  const rerun = [
    'mlflowctl backup restore',
    options.backupRef ?? options.archive,
    ...(options.repo ? ['--repo', options.repo] : []),
    '--to',
    driver.asArgument(target),
    ...(options.artifactsTo ? ['--artifacts-to', options.artifactsTo] : []),
    '--force',
  ].join(' ')
  const suggestions = [
    ...(inspection.didYouMean ? [`Did you mean --to ${inspection.didYouMean}? It holds an mlflow.db.`] : []),
    `If this is the right target: ${rerun} (a safety backup of everything it replaces is taken first${inspection.foreign.length ? `; ${inspection.foreign.join(', ')} stay untouched` : ''}).`,
  ]
  return new UsageError(
    'TARGET_NOT_EMPTY',
    `${driver.describe(target)} is not empty: it holds ${inspection.found.join(', ')}.`,
    {suggestions},
  )
}

export async function restoreBackup(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  try {
    return await runRestore(deps, options)
  } catch (error) {
    const driver = deps.target.driver(options.target)
    const where = {location: driver.historyLocation(options.target), secrets: driver.secrets(options.target)}
    const event = failureEvent('restore', where, error, deps.clock.now(), options.backupRef ?? options.archive)
    await deps.history.append(event).catch(() => undefined)
    throw error
  }
}

async function runRestore(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const release = await deps.target.lock(options.target, options.artifactsTo)
  try {
    return await restoreLocked(deps, options)
  } finally {
    await release()
  }
}

async function restoreLocked(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const target = options.target
  const driver = deps.target.driver(target)
  const warnings = await deps.target.recover(target, options.artifactsTo)
  const inspection = await deps.target.inspect(target, options.artifactsTo)
  if (inspection.objectsAtArtifactsTo)
    throw new UsageError(
      'TARGET_NOT_EMPTY',
      `--artifacts-to ${options.artifactsTo} holds ${inspection.objectsAtArtifactsTo} objects; a restore uploads artifacts only into an empty prefix and never deletes objects in a bucket, --force included.`,
      {
        suggestions: [
          `Use an empty prefix, for example --artifacts-to ${options.artifactsTo!.replace(/\/+$/, '')}-restored.`,
          'Objects left by an interrupted restore (killed before its database committed) are not referenced by any run: check, then delete them yourself.',
        ],
      },
    )
  if (inspection.holdsData) {
    if (!options.force) throw targetNotEmpty(driver, target, inspection, options)
    if (!(await deps.confirm(`Replace the data in ${driver.describe(target)}? A safety backup is taken first.`)))
      throw new UsageError('CANCELLED_BY_USER', 'Nothing changed.')
  }
  // Only MLflow's files are replaced; entries that are not MLflow's stay where they are and need no copy.
  const replace = options.force && inspection.found.length > inspection.foreign.length
  const scratch = await deps.target.scratch(target, options.artifactsTo)
  let prepared: Promise<PreparedDatabase> | undefined
  try {
    const expected = await deps.source.expectedManifest(options.archive, scratch.path)
    if (!expected.alembicRevision)
      throw new ConfigError(
        'BACKUP_WITHOUT_SCHEMA',
        `Backup ${expected.id} has no alembic revision: it is not an MLflow database backup.`,
      )
    const revision = expected.alembicRevision
    const schema = await deps.loader.expectedSchema(revision)
    if (!schema) throw revisionUnknown(expected.id, revision)
    // A PostgreSQL source's tables are known from the manifest: another application's are refused (or left out) now.
    const foreignTables = foreignTablesOf(expected, schema)
    if (foreignTables.length > 0 && !options.dropForeignObjects) throw foreignSchemaError(expected.id, foreignTables)
    const plan = driver.plan(target, scratch.path, expected, deps)
    if (plan.loaderUrl) {
      // MLflow creates the schema (a few seconds of Python and migrations) while the archive is read.
      await deps.target.makeDir(plan.dbDir)
      if (!plan.inPlace) await deps.target.makeDir(deps.paths.dirname(plan.stagedDb))
      prepared = deps.loader.prepareDatabase(plan.loaderUrl, revision, plan.dbDir, {
        replace: Boolean(plan.inPlace) && replace,
        mark: plan.inPlace?.mark,
        tables: Object.keys(withoutTables(expected, foreignTables).rowCounts),
        gated: Boolean(plan.inPlace),
      })
      prepared.catch(() => undefined) // awaited when the rows are ready; a failure before then is not lost
    }
    // Format 2's database file is checked while the artifacts after it are still being extracted.
    let gate: ReturnType<RestoreDeps['loader']['inspectSqlite']> | undefined
    const manifest = await deps.source.extractVerified(options.archive, scratch.path, expected, (name) => {
      if (name !== SQLITE_FILE_ENTRY) return
      gate = deps.loader.inspectSqlite(deps.paths.join(scratch.path, SQLITE_FILE_ENTRY))
      gate.catch(() => undefined) // awaited below; a failure meanwhile is not lost
    })
    const dropped = [...foreignTables]
    if (foreignTables.length > 0)
      await deps.loader.dropTableFiles(
        plan.dbDir,
        foreignTables.map((f) => f.object.name),
      )
    // Format 2 carries the SQLite file, used as it is or streamed on: checked before anything else.
    if (holdsSqliteFile(manifest)) {
      const snapshot = deps.paths.join(scratch.path, SQLITE_FILE_ENTRY)
      dropped.push(
        ...(await gateSnapshot(deps.loader, manifest, schema, snapshot, gate, Boolean(options.dropForeignObjects))),
      )
    }
    const safetyBackup = replace ? await deps.target.safetyBackup(target, options.artifactsTo) : undefined
    const restored = withoutTables(manifest, dropped)
    const kit = installKit({deps, options, scratch, manifest: restored, plan, prepared, replace: Boolean(safetyBackup)})
    const loaded = await driver.install(target, kit)
    warnings.push(...driver.warnings(target, {manifest, inspection, artifactsTo: options.artifactsTo}))
    await deps.history.append({
      v: 1,
      time: deps.clock.now().toISOString(),
      action: 'restore',
      result: 'ok',
      server: driver.historyLocation(target),
      revision,
      message: `${manifest.id} into ${driver.describe(target)}`,
    })
    return {
      backupId: manifest.id,
      target: driver.describe(target),
      revision,
      tables: loaded.tables,
      rows: loaded.rows,
      artifactFiles: loaded.artifactFiles,
      safetyBackup,
      ...(loaded.locations ? {artifactLocations: loaded.locations} : {}),
      ...(dropped.length > 0 ? {droppedObjects: dropped.map((f) => describeObject(f.object))} : {}),
      warnings,
    }
  } catch (error) {
    // A loader still waiting for its rows (the archive failed its checks, the safety backup failed) lets go.
    await prepared?.then((database) => database.abort()).catch(() => undefined)
    throw error
  } finally {
    await scratch.remove()
  }
}
