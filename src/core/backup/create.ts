/**
 * `backup create` from an app-data directory, a SQLite file, a PostgreSQL database or a Connect deployment (each a
 * driver in sources/): options in, result out, I/O injected.
 */
import {redact} from '../redact.js'
import {ConfigError, UsageError} from '../../errors.js'
import {isObjectStoreUrl} from '../artifact-url.js'
import {proxiedPath} from './deep-verify.js'
import type {HistoryEvent} from '../history.js'
import {foreignObjects, type ExpectedSchema, type SchemaObject} from './schema-objects.js'
import {PASSPHRASE_ENV, SQLITE_FILE_ENTRY, backupId, type BackupFileEntry, type BackupManifest} from './format.js'
import type {RepositoryFormat, SnapshotStats} from './snapshots.js'

export {PASSPHRASE_ENV}
import {sourceDriver} from './sources/index.js'
import type {Exported} from './sources/driver.js'

export type BackupSourceSpec =
  | {kind: 'app-data'; dir: string}
  | {kind: 'sqlite'; path: string}
  | {kind: 'postgresql'; url: string; display: string}
  | {kind: 'connect'; guid: string}

export interface CreateOptions {
  source: BackupSourceSpec
  repo: string
  /** all: every file in the store; referenced: only under locations rows point at (no orphans); none. */
  artifacts: 'all' | 'referenced' | 'none'
  /** Artifacts directory for a sqlite:/// or postgresql:// source (an app-data dir has its own). */
  artifactsSource?: string
  healthcheckUrl?: string
  toolVersion: string
  /** The archive is encrypted (the adapter holds the passphrase). */
  encrypted?: boolean
  /** Refuse a source that holds no MLflow database (default). A safety backup keeps whatever is there. */
  requireMlflow?: boolean
  /** A snapshot in the repository or one self-contained archive; default: the format the repository recorded. */
  format?: RepositoryFormat
  /** Reread every file, even those the parent snapshot says are unchanged. */
  forceRead?: boolean
}

/** A file a snapshot takes: read where it is, downloaded first, or (same size and version) referenced unread. */
export interface SnapshotEntry {
  name: string
  size?: number
  version?: string
  file?: string
  /** The bytes as a stream (a database read in place). */
  read?: () => AsyncIterable<Uint8Array>
  download?: (to: string) => Promise<void>
}

/** A SQLite database read in place under one read transaction: what exportSqlite learns from its copy, and the bytes. */
export interface LiveDatabase {
  rowCounts: Record<string, number>
  alembicRevision: string | null
  objects: SchemaObject[]
  read(): AsyncIterable<Uint8Array>
  close(): void
}

export interface CreateResult {
  id: string
  path: string
  bytes: number
  tables: number
  rows: number
  files: number
  revision: string | null
  mlflowVersion: string | null
  warnings: string[]
  /** archive, or snapshot with what it read and added. */
  format: RepositoryFormat
  /** With how the database was taken: unchanged since the parent (not read), read in place, or copied first. */
  snapshot?: SnapshotStats & {database: 'unchanged' | 'read in place' | 'copied' | 'exported' | 'none'}
}

export interface TablesExported {
  rowCounts: Record<string, number>
  alembicRevision: string | null
  files: Array<{name: string; file: string}>
  /** Objects of other applications in the same schema ("customers", "trigger x on runs"), left out. */
  skipped?: string[]
}

export interface CreateDeps {
  /** The source: where it is, its database as the archive carries it, its artifacts and what its rows point at. */
  source: {
    /** Finishes or undoes an interrupted restore into a local source before it is read; returns what it did. */
    recover(source: BackupSourceSpec, artifactsSource?: string): Promise<string[]>
    exists(path: string): Promise<boolean>
    /** When `dir` is a rendered bundle that `dev up` ran: the data directory of that dev instance. */
    devDataDirOf?(dir: string): Promise<string | undefined>
    snapshotSqlite(source: string, target: string): Promise<void>
    /** Format 2: the row counts, revision and schema of a snapshot file, which goes into the archive as it is. */
    describeSnapshot(
      snapshot: string,
    ): Pick<TablesExported, 'rowCounts' | 'alembicRevision'> & {objects: SchemaObject[]}
    /** What MLflow's migrations make at `revision`, or undefined when the MLflow this tool knows does not make it. */
    expectedSchema(revision: string): Promise<ExpectedSchema | undefined>
    /** Drops objects from the snapshot (a scratch copy). */
    dropSnapshotObjects(snapshot: string, objects: SchemaObject[]): Promise<void>
    /** Artifact URIs a snapshot file's rows point at (runs, logged models, model versions, trace tags). */
    snapshotReferences(snapshot: string): string[]
    /** Every MLflow table from one REPEATABLE READ snapshot, streamed with COPY. */
    exportPostgres(url: string, outDir: string): Promise<TablesExported>
    /** Streams a local-storage deployment's snapshot (the extension's POST /_mlflowctl/snapshot) into `dir`. */
    fetchConnectSnapshot(guid: string, dir: string): Promise<{db: string; artifacts: string; location: string}>
    /**
     * Files of a local directory or an s3://, wasbs://, gs:// prefix, as artifacts/<path> entries on local disk.
     * `onSkip` hears of files that cannot be archived (a name that is not valid UTF-8), for the warnings.
     */
    listArtifacts(
      source: string,
      include: ((path: string) => boolean) | undefined,
      onSkip: (message: string) => void,
    ): AsyncIterable<{name: string; file: string}>
    /** Artifact URIs the exported rows point at (runs, logged models, model versions), from the db/ files. */
    readReferences(exportDir: string): Promise<string[]>
    /** A SQLite file's state as a snapshot records it (its and its WAL's size and mtime): unchanged means unwritten. */
    databaseState(db: string): Promise<string | undefined>
    /**
     * The database read where it is, when that is consistent without a copy (a WAL-mode file whose WAL a checkpoint
     * emptied); undefined otherwise, and the snapshot copies it as an archive does.
     */
    liveSqlite(db: string): Promise<LiveDatabase | undefined>
    /** The store's files with size and version, fetched only when a snapshot needs their bytes. */
    artifactEntries(
      source: string,
      include: ((path: string) => boolean) | undefined,
      onSkip: (message: string) => void,
    ): AsyncIterable<SnapshotEntry>
  }
  /** The snapshot side of the repository. */
  snapshots: {
    /** The recorded format, else `wanted`, else snapshot (archive for a repository that holds archives already). */
    format(wanted: RepositoryFormat | undefined): Promise<RepositoryFormat>
    /** Records "archive" as the format of a repository used for the first time, once its archive is committed. */
    recordArchive(): Promise<void>
    /** The newest snapshot of this source: what its database file was, for the unchanged check. */
    parent(
      location: string,
    ): Promise<
      | {id: string; databaseState?: string; manifest: BackupManifest; dbFiles: Array<{name: string; size: number}>}
      | undefined
    >
    /** Writes the snapshot (packs, index, then the document that lists it); returns where and what it added. */
    write(
      entries: AsyncIterable<SnapshotEntry>,
      options: {forceRead: boolean; databaseState?: string},
      finish: (files: BackupFileEntry[]) => BackupManifest,
    ): Promise<{path: string; manifest: BackupManifest; stats: SnapshotStats}>
  }
  /** The repository the archive goes to. */
  repository: {
    /** Takes the repository lock. @throws ExternalError REPO_LOCKED while another run holds it */
    lock(): Promise<() => Promise<void>>
    /** Under the lock: removes what killed runs left in the repository (partial archives, scratch), commits an
     * intact archive a kill left without its listing sidecar; returns what it did. */
    cleanUp(): Promise<string[]>
    /** Where the archive is written (a local repository's own directory, or scratch space before an upload). */
    stage(id: string): Promise<string>
    /** The archive's write failed (not a kill): its in-progress record goes, as its partial file did. */
    abandon(id: string): Promise<void>
    /** Publishes a complete archive and its listing sidecar (last: a backup without it is never listed); returns where it is. */
    commit(manifest: BackupManifest, staged: string): Promise<string>
  }
  /** The archive being written, and the private scratch space the database is exported into first. */
  archive: {
    scratch(): Promise<{path: string; remove(): Promise<void>}>
    write(
      output: string,
      sources: AsyncIterable<{name: string; file: string}>,
      finish: (files: BackupFileEntry[]) => BackupManifest,
    ): Promise<{bytes: number; manifest: BackupManifest}>
  }
  clock: {
    now(): Date
    randomId(): string
  }
  history: {
    append(event: HistoryEvent): Promise<void>
  }
  /** A healthcheck URL's GET (start, success, fail). */
  ping(url: string): Promise<void>
  paths: {
    join(...parts: string[]): string
  }
}

/** Where a passphrase for `backup create` came from, if one was given. */
export type PassphraseSource = '--passphrase-file' | typeof PASSPHRASE_ENV

/**
 * Whether a backup is encrypted: when --encrypt asks for it, and whenever a passphrase is given in any form (a
 * passphrase that leaves the archive in clear would be a false promise). --no-encrypt writes plaintext despite a
 * passphrase in the environment, but not beside --passphrase-file, which says the opposite. Pure.
 * @throws UsageError ENCRYPT_CONFLICT, ConfigError PASSPHRASE_REQUIRED
 */
export function decideEncryption(encrypt: boolean | undefined, passphraseFrom: PassphraseSource | undefined): boolean {
  if (encrypt === false && passphraseFrom === '--passphrase-file')
    throw new UsageError(
      'ENCRYPT_CONFLICT',
      '--no-encrypt and --passphrase-file contradict each other: a passphrase is only used to encrypt.',
      {
        suggestions: [
          'Drop --no-encrypt to encrypt with that passphrase, or drop --passphrase-file for a plaintext backup.',
        ],
      },
    )
  if (encrypt === false) return false
  if (encrypt && !passphraseFrom)
    throw new ConfigError('PASSPHRASE_REQUIRED', '--encrypt needs a passphrase.', {
      suggestions: ['Pass --passphrase-file FILE or set MLFLOWCTL_BACKUP_PASSPHRASE.'],
    })
  return Boolean(passphraseFrom)
}

/** What a source that is not an MLflow database holds, for the refusal. Pure. */
export function notMlflowSource(location: string, tables: TablesExported): ConfigError {
  const names = [...Object.keys(tables.rowCounts), ...(tables.skipped ?? [])]
  const found =
    names.length === 0
      ? 'no tables at all'
      : `${names.length} tables but no alembic_version (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''})`
  return new ConfigError(
    'SOURCE_NOT_MLFLOW',
    `${location} is not an MLflow database: it has ${found}. Nothing was backed up.`,
    {
      suggestions: [
        'Check the path or URL: an app-data directory holds mlflow.db, which the tracking server creates on its first start.',
      ],
    },
  )
}

/** The store paths that proxied URIs (mlflow-artifacts:/…) point at; other schemes say nothing about this store. */
export function referencedPrefixes(uris: string[]): string[] {
  return [...new Set(uris.map(proxiedPath).filter((path): path is string => Boolean(path)))].sort()
}

/**
 * Whether a store path (relative to the artifact root) lies under a referenced location. Rows that point
 * elsewhere (s3://…, file paths: a server without the artifact proxy) cannot be mapped onto the store, so
 * `referenced` refuses rather than silently back up nothing.
 * @throws UsageError ARTIFACTS_NOT_PROXIED
 */
export function referencedFilter(uris: string[]): (path: string) => boolean {
  const prefixes = referencedPrefixes(uris)
  if (prefixes.length === 0 && uris.length > 0) {
    throw new UsageError(
      'ARTIFACTS_NOT_PROXIED',
      `--artifacts referenced maps mlflow-artifacts:/ URIs onto the store, but the rows point elsewhere (e.g. ${uris[0].replace(/\/\/[^@/]*@/, '//***@')}).`,
      {suggestions: ['Use --artifacts all.']},
    )
  }
  return (path) => prefixes.some((prefix) => path === prefix || path.startsWith(`${prefix}/`))
}

/** The live database's bytes; its read transaction ends with them (a held one keeps MLflow's WAL from shrinking). */
async function* readThenRelease(live: LiveDatabase): AsyncIterable<Uint8Array> {
  try {
    yield* live.read()
  } finally {
    live.close()
  }
}

async function* concat<T>(...parts: Array<Iterable<T> | AsyncIterable<T>>): AsyncIterable<T> {
  for (const part of parts) yield* part
}

/**
 * Takes the lock, snapshots the database, exports it table by table, streams it and the artifacts into
 * one archive (NAME.partial, then renamed), writes the listing sidecar and a history event. Healthcheck
 * pings (start, success, fail) are best effort: a failed ping is a warning.
 */
export async function createBackup(deps: CreateDeps, options: CreateOptions): Promise<CreateResult> {
  try {
    return await runCreate(deps, options)
  } catch (error) {
    // A failed backup is in the history as failed deploys are (a ledger that fails too keeps the first error).
    const where = {location: historyLocation(options.source), secrets: secretsOf(options.source)}
    await deps.history.append(failureEvent('backup', where, error, deps.clock.now())).catch(() => undefined)
    throw error
  }
}

/** The history entry of a failed backup or restore: where, and the error's first line with secrets masked. Pure. */
export function failureEvent(
  action: 'backup' | 'restore',
  where: {location: string; secrets: string[]},
  error: unknown,
  now: Date,
  subject?: string,
): HistoryEvent {
  const reason = (error as Error).message.split('\n')[0]
  return {
    v: 1,
    time: now.toISOString(),
    action,
    result: 'failed',
    server: where.location,
    message: redact(subject ? `${subject}: ${reason}` : reason, where.secrets),
  }
}

/** The password of a database URL, in the forms a driver's message may carry it. */
export const secretsOf = (spec: BackupSourceSpec): string[] => sourceDriver(spec).secrets(spec)

/** Where a backup source or restore target is, as the history ledger names it (file:// for local paths). */
export function historyLocation(spec: BackupSourceSpec): string {
  return sourceDriver(spec).historyLocation(spec)
}

async function runCreate(deps: CreateDeps, options: CreateOptions): Promise<CreateResult> {
  const warnings: string[] = []
  const driver = sourceDriver(options.source)
  const ping = async (suffix: string) => {
    if (!options.healthcheckUrl) return
    const url = `${options.healthcheckUrl.replace(/\/$/, '')}${suffix}`
    await deps
      .ping(url)
      .catch((error: Error) => warnings.push(`healthcheck ping ${suffix || '(success)'} failed: ${error.message}`))
  }
  await ping('/start')
  const started = deps.clock.now()
  const id = backupId(started, deps.clock.randomId())
  let release: (() => Promise<void>) | undefined
  let scratch: {path: string; remove(): Promise<void>} | undefined
  let live: LiveDatabase | undefined
  try {
    warnings.push(...(await deps.source.recover(options.source, options.artifactsSource)))
    const located = await driver.locate(options.source, deps, options)
    release = await deps.repository.lock()
    warnings.push(...(await deps.repository.cleanUp()))
    const format = await deps.snapshots.format(options.format)
    scratch = await deps.archive.scratch()
    const source = await driver.reach(options.source, located, deps, scratch.path)
    // A snapshot skips the database when it is the file the parent read, unwritten since (as restic skips a file
    // whose size and mtime are the same); --force-read, a fetched copy and --artifacts referenced always export it.
    const parent = format === 'snapshot' ? await deps.snapshots.parent(source.location) : undefined
    const databaseState =
      format === 'snapshot' && source.db && driver.engine === 'sqlite' && options.source.kind !== 'connect'
        ? await deps.source.databaseState(source.db)
        : undefined
    const unchangedDatabase =
      !options.forceRead &&
      options.artifacts !== 'referenced' &&
      databaseState !== undefined &&
      parent?.databaseState === databaseState
    // A snapshot reads a WAL-mode database in place, without the online-backup copy, unless it holds objects that are
    // not MLflow's (the copy drops them).
    live =
      !unchangedDatabase && databaseState !== undefined && options.artifacts !== 'referenced'
        ? await deps.source.liveSqlite(source.db!)
        : undefined
    if (live) {
      const schema = live.alembicRevision ? await deps.source.expectedSchema(live.alembicRevision) : undefined
      if (schema && foreignObjects(live.objects, schema).length > 0) {
        live.close()
        live = undefined
      }
    }
    const tables: Exported = live
      ? {rowCounts: live.rowCounts, alembicRevision: live.alembicRevision, files: [], format: 2}
      : unchangedDatabase
        ? {
            rowCounts: parent.manifest.rowCounts,
            alembicRevision: parent.manifest.alembicRevision,
            files: [],
            format: parent.manifest.format,
          }
        : source.db
          ? await driver.exportDatabase(options.source, source.db, deps, scratch.path)
          : {rowCounts: {}, alembicRevision: null, files: [], format: 2}
    if (!tables.alembicRevision && options.requireMlflow !== false) throw notMlflowSource(source.location, tables)
    if (tables.skipped?.length)
      warnings.push(
        `left out ${tables.skipped.length} objects that are not MLflow's: ${tables.skipped.join(', ')} (if a newer MLflow made them, upgrade mlflowctl)`,
      )
    const remoteStore = isObjectStoreUrl(source.artifacts ?? '')
    const artifactSource =
      options.artifacts !== 'none' && source.artifacts && (remoteStore || (await deps.source.exists(source.artifacts)))
        ? source.artifacts
        : undefined
    const include =
      artifactSource && options.artifacts === 'referenced'
        ? referencedFilter(
            tables.snapshot
              ? deps.source.snapshotReferences(tables.snapshot)
              : await deps.source.readReferences(scratch.path),
          )
        : undefined
    const onSkip = (message: string) => warnings.push(message)
    let artifactFiles = 0
    let artifactBytes = 0
    const finish = (files: BackupFileEntry[]): BackupManifest => {
      const artifacts = files.filter((file) => file.path.startsWith('artifacts/'))
      artifactFiles = artifacts.length
      artifactBytes = artifacts.reduce((sum, file) => sum + file.size, 0)
      return {
        format: tables.format,
        id,
        createdAt: started.toISOString(),
        toolVersion: options.toolVersion,
        source: {
          kind: options.source.kind,
          location: source.location,
          engine: driver.engine,
          ...driver.manifestExtras(options.source),
        },
        alembicRevision: tables.alembicRevision,
        envNames: [],
        rowCounts: tables.rowCounts,
        artifacts: {
          mode: artifactSource ? options.artifacts : 'none',
          files: artifactFiles,
          bytes: artifactBytes,
          ...(artifactSource ? {root: artifactSource} : {}),
        },
        encrypted: Boolean(options.encrypted),
        files,
      }
    }
    let path: string
    let bytes: number
    let stats: SnapshotStats | undefined
    const databaseTaken = unchangedDatabase
      ? 'unchanged'
      : live
        ? 'read in place'
        : !source.db
          ? 'none'
          : driver.engine === 'sqlite'
            ? 'copied'
            : 'exported'
    if (format === 'snapshot') {
      const reading = live
      const databaseEntries: SnapshotEntry[] = reading
        ? [{name: SQLITE_FILE_ENTRY, read: () => readThenRelease(reading), version: databaseState}]
        : unchangedDatabase
          ? parent.dbFiles.map((file) => ({...file, version: databaseState}))
          : tables.files.map((file) => ({...file, version: databaseState}))
      const written = await deps.snapshots.write(
        concat(databaseEntries, artifactSource ? deps.source.artifactEntries(artifactSource, include, onSkip) : []),
        {forceRead: Boolean(options.forceRead), databaseState},
        finish,
      )
      path = written.path
      stats = written.stats
      bytes = stats.bytesAdded
    } else {
      const artifactEntries = artifactSource ? deps.source.listArtifacts(artifactSource, include, onSkip) : []
      const staged = await deps.repository.stage(id)
      const {bytes: archiveBytes, manifest} = await deps.archive
        .write(staged, concat(tables.files, artifactEntries), finish)
        .catch(async (error) => {
          await deps.repository.abandon(id).catch(() => undefined)
          throw error
        })
      bytes = archiveBytes
      path = await deps.repository.commit(manifest, staged)
      await deps.snapshots.recordArchive()
    }
    await deps.history.append({
      v: 1,
      time: deps.clock.now().toISOString(),
      action: 'backup',
      result: 'ok',
      server: historyLocation(options.source),
      revision: tables.alembicRevision ?? undefined,
      message: `${id} (${bytes} bytes)`,
    })
    await ping('')
    const rowCounts = Object.values(tables.rowCounts)
    return {
      id,
      path,
      bytes,
      tables: rowCounts.length,
      rows: rowCounts.reduce((a, b) => a + b, 0),
      files: artifactFiles,
      revision: tables.alembicRevision,
      mlflowVersion: null,
      warnings,
      format,
      ...(stats ? {snapshot: {...stats, database: databaseTaken}} : {}),
    }
  } catch (error) {
    await ping('/fail')
    throw error
  } finally {
    live?.close()
    await scratch?.remove()
    await release?.()
  }
}
