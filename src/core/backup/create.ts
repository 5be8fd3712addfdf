/** `backup create` from a local app-data directory or a SQLite file: options in, result out, I/O injected. */
import {redact, urlPasswordForms} from '../redact.js'
import {ConfigError, UsageError} from '../../errors.js'
import {isObjectStoreUrl} from '../artifact-url.js'
import {proxiedPath} from './deep-verify.js'
import type {HistoryEvent} from '../history.js'
import {describeObject, foreignObjects, type ExpectedSchema, type SchemaObject} from './schema-objects.js'
import {SQLITE_FILE_ENTRY, backupId, type BackupFileEntry, type BackupFormat, type BackupManifest} from './format.js'

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
}

export interface TablesExported {
  rowCounts: Record<string, number>
  alembicRevision: string | null
  files: Array<{name: string; file: string}>
  /** Objects of other applications in the same schema ("customers", "trigger x on runs"), left out. */
  skipped?: string[]
}

export interface CreateDeps {
  /** Finishes or undoes an interrupted restore into a local source before it is read; returns what it did. */
  recoverSource(source: BackupSourceSpec, artifactsSource?: string): Promise<string[]>
  /** Takes the repository lock. @throws ExternalError REPO_LOCKED while another run holds it */
  lock(): Promise<() => Promise<void>>
  /** Under the lock: removes what killed runs left in the repository (partial archives, scratch), commits an
   * intact archive a kill left without its listing sidecar; returns what it did. */
  cleanUp(): Promise<string[]>
  /** Where the archive is written (a local repository's own directory, or scratch space before an upload). */
  stageArchive(id: string): Promise<string>
  /** The archive's write failed (not a kill): its in-progress record goes, as its partial file did. */
  abandonArchive(id: string): Promise<void>
  /** Publishes a complete archive and its listing sidecar (last: a backup without it is never listed); returns where it is. */
  commitArchive(manifest: BackupManifest, staged: string): Promise<string>
  scratch(): Promise<{path: string; remove(): Promise<void>}>
  exists(path: string): Promise<boolean>
  /** When `dir` is a rendered bundle that `dev up` ran: the data directory of that dev instance. */
  devDataDirOf?(dir: string): Promise<string | undefined>
  snapshotSqlite(source: string, target: string): Promise<void>
  /** Format 2: the row counts, revision and schema of a snapshot file, which goes into the archive as it is. */
  describeSnapshot(snapshot: string): Pick<TablesExported, 'rowCounts' | 'alembicRevision'> & {objects: SchemaObject[]}
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
  /** Files of a local directory or an s3://, wasbs://, gs:// prefix, as artifacts/<path> entries on local disk. */
  /** `onSkip` hears of files that cannot be archived (a name that is not valid UTF-8), for the warnings. */
  listArtifacts(
    source: string,
    include: ((path: string) => boolean) | undefined,
    onSkip: (message: string) => void,
  ): AsyncIterable<{name: string; file: string}>
  /** Artifact URIs the exported rows point at (runs, logged models, model versions), from the db/ files. */
  readReferences(exportDir: string): Promise<string[]>
  writeArchive(
    output: string,
    sources: AsyncIterable<{name: string; file: string}>,
    finish: (files: BackupFileEntry[]) => BackupManifest,
  ): Promise<{bytes: number; manifest: BackupManifest}>
  appendHistory(event: HistoryEvent): Promise<void>
  ping(url: string): Promise<void>
  join(...parts: string[]): string
  now(): Date
  randomId(): string
}

/** Where a passphrase for `backup create` came from, if one was given. */
export type PassphraseSource = '--passphrase-file' | 'MLFLOWCTL_BACKUP_PASSPHRASE'

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

/** Where the database and the artifacts of a source are. @throws UsageError SOURCE_INVALID */
async function locate(
  deps: CreateDeps,
  options: CreateOptions,
): Promise<{db?: string; artifacts?: string; location: string}> {
  // A safety backup keeps whatever is there: a target with artifacts and no database (yet) included.
  const keepAnything = options.requireMlflow === false
  if (options.source.kind === 'connect') throw new Error('a connect: source is fetched, not located')
  if (options.source.kind === 'postgresql')
    return {db: options.source.url, artifacts: options.artifactsSource, location: options.source.display}
  if (options.source.kind === 'sqlite') {
    const found = await deps.exists(options.source.path)
    if (!found && !keepAnything) throw new UsageError('SOURCE_NOT_FOUND', `${options.source.path} does not exist.`)
    return {
      db: found ? options.source.path : undefined,
      artifacts: options.artifactsSource,
      location: options.source.path,
    }
  }
  const db = deps.join(options.source.dir, 'mlflow.db')
  if (keepAnything && !(await deps.exists(db)))
    return {artifacts: deps.join(options.source.dir, 'artifacts'), location: options.source.dir}
  if (!(await deps.exists(db))) {
    // A rendered bundle is the directory users know; its dev data lives elsewhere: name it.
    const devData = await deps.devDataDirOf?.(options.source.dir)
    throw new UsageError(
      'SOURCE_NOT_FOUND',
      `${options.source.dir} is not an app-data directory: it has no mlflow.db.${devData ? ` It is a bundle directory; the data of its dev instance is in ${devData}.` : ''}`,
      {
        suggestions: [
          ...(devData ? [`mlflowctl backup create --source ${devData} --repo ${options.repo}`] : []),
          "Pass the content's data directory (CONNECT_CONTENT_DATA_DIR), or sqlite:////path/to/mlflow.db.",
        ],
      },
    )
  }
  return {db, artifacts: deps.join(options.source.dir, 'artifacts'), location: options.source.dir}
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

/**
 * Format 2. SQLite: a snapshot file through the online backup API, archived as it is; PostgreSQL: every table from
 * one snapshot transaction, as its COPY text.
 */
async function exportDatabase(
  deps: CreateDeps,
  spec: BackupSourceSpec,
  db: string,
  scratch: string,
): Promise<TablesExported & {format: BackupFormat; snapshot?: string}> {
  if (spec.kind === 'postgresql') return {...(await deps.exportPostgres(db, scratch)), format: 2}
  const snapshot = deps.join(scratch, 'snapshot.db')
  await deps.snapshotSqlite(db, snapshot)
  let described = deps.describeSnapshot(snapshot)
  // What MLflow does not make (another application's table, a trigger, a view) is left out of the copy, as a
  // PostgreSQL source's other tables are: a restore would refuse it.
  const schema = described.alembicRevision ? await deps.expectedSchema(described.alembicRevision) : undefined
  const foreign = schema ? foreignObjects(described.objects, schema) : []
  if (foreign.length > 0) {
    await deps.dropSnapshotObjects(
      snapshot,
      foreign.map((f) => f.object),
    )
    described = deps.describeSnapshot(snapshot)
  }
  return {
    rowCounts: described.rowCounts,
    alembicRevision: described.alembicRevision,
    skipped: foreign.map((f) => describeObject(f.object)),
    files: [{name: SQLITE_FILE_ENTRY, file: snapshot}],
    format: 2,
    snapshot,
  }
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
    await deps.appendHistory(failureEvent('backup', options.source, error, deps.now())).catch(() => undefined)
    throw error
  }
}

/** The history entry of a failed backup or restore: where, and the error's first line with secrets masked. Pure. */
export function failureEvent(
  action: 'backup' | 'restore',
  spec: BackupSourceSpec,
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
    server: historyLocation(spec),
    message: redact(subject ? `${subject}: ${reason}` : reason, secretsOf(spec)),
  }
}

/** The password of a database URL, in the forms a driver's message may carry it. */
export const secretsOf = (spec: BackupSourceSpec): string[] =>
  spec.kind === 'postgresql' ? urlPasswordForms(spec.url) : []

/** Where a backup source or restore target is, as the history ledger names it (file:// for local paths). */
export function historyLocation(spec: BackupSourceSpec): string {
  if (spec.kind === 'app-data') return `file://${spec.dir}`
  if (spec.kind === 'sqlite') return `file://${spec.path}`
  if (spec.kind === 'postgresql') return spec.display
  return `connect:${spec.guid}`
}

async function runCreate(deps: CreateDeps, options: CreateOptions): Promise<CreateResult> {
  const warnings: string[] = []
  const ping = async (suffix: string) => {
    if (!options.healthcheckUrl) return
    const url = `${options.healthcheckUrl.replace(/\/$/, '')}${suffix}`
    await deps
      .ping(url)
      .catch((error: Error) => warnings.push(`healthcheck ping ${suffix || '(success)'} failed: ${error.message}`))
  }
  await ping('/start')
  const started = deps.now()
  const id = backupId(started, deps.randomId())
  let release: (() => Promise<void>) | undefined
  let scratch: {path: string; remove(): Promise<void>} | undefined
  try {
    warnings.push(...(await deps.recoverSource(options.source, options.artifactsSource)))
    const local = options.source.kind === 'connect' ? undefined : await locate(deps, options)
    release = await deps.lock()
    warnings.push(...(await deps.cleanUp()))
    scratch = await deps.scratch()
    // `local` was located before the lock so that a bad path fails fast; the fallback only satisfies the types.
    const source =
      options.source.kind === 'connect'
        ? await deps.fetchConnectSnapshot(options.source.guid, deps.join(scratch.path, 'remote'))
        : (local ?? (await locate(deps, options)))
    const tables: Awaited<ReturnType<typeof exportDatabase>> = source.db
      ? await exportDatabase(deps, options.source, source.db, scratch.path)
      : {rowCounts: {}, alembicRevision: null, files: [], format: 2}
    if (!tables.alembicRevision && options.requireMlflow !== false) throw notMlflowSource(source.location, tables)
    if (tables.skipped?.length)
      warnings.push(
        `left out ${tables.skipped.length} objects that are not MLflow's: ${tables.skipped.join(', ')} (if a newer MLflow made them, upgrade mlflowctl)`,
      )
    const remoteStore = isObjectStoreUrl(source.artifacts ?? '')
    const artifactSource =
      options.artifacts !== 'none' && source.artifacts && (remoteStore || (await deps.exists(source.artifacts)))
        ? source.artifacts
        : undefined
    const include =
      artifactSource && options.artifacts === 'referenced'
        ? referencedFilter(
            tables.snapshot ? deps.snapshotReferences(tables.snapshot) : await deps.readReferences(scratch.path),
          )
        : undefined
    const artifactEntries = artifactSource
      ? deps.listArtifacts(artifactSource, include, (message) => warnings.push(message))
      : []
    let artifactFiles = 0
    let artifactBytes = 0
    const staged = await deps.stageArchive(id)
    const written = deps.writeArchive(staged, concat(tables.files, artifactEntries), (files) => {
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
          engine: options.source.kind === 'postgresql' ? 'postgresql' : 'sqlite',
          ...(options.source.kind === 'connect' ? {contentGuid: options.source.guid} : {}),
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
    })
    const {bytes, manifest} = await written.catch(async (error) => {
      await deps.abandonArchive(id).catch(() => undefined)
      throw error
    })
    const path = await deps.commitArchive(manifest, staged)
    await deps.appendHistory({
      v: 1,
      time: deps.now().toISOString(),
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
    }
  } catch (error) {
    await ping('/fail')
    throw error
  } finally {
    await scratch?.remove()
    await release?.()
  }
}
