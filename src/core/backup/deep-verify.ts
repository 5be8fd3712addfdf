/**
 * `backup verify --deep`: beyond the checksums, restore the database into a scratch SQLite with real MLflow,
 * let SQLite check it, compare its row counts with the manifest, and check the artifacts against the rows
 * that point at them. Options in, findings out; the restore and the queries are injected.
 */
import {CheckFailedError} from '../../errors.js'
import {SQLITE_FILE_ENTRY, holdsSqliteFile, type BackupManifest} from './format.js'
import {loadPrepared, type PrepareDatabase} from './prepared-database.js'
import {
  describeObject,
  foreignObjects,
  missingTables,
  type ExpectedSchema,
  type SchemaObject,
} from './schema-objects.js'
import {foreignTablesOf} from './restore-schema.js'

/** Tables and rows of a manifest's row counts. Pure. */
export function countsOf(rowCounts: Record<string, number>): {tables: number; rows: number} {
  const counts = Object.values(rowCounts)
  return {tables: counts.length, rows: counts.reduce((sum, count) => sum + count, 0)}
}

export interface RestoredDatabase {
  /** PRAGMA integrity_check lines other than "ok". */
  integrity: string[]
  /** PRAGMA foreign_key_check rows, as "child → parent". */
  foreignKeyViolations: string[]
  rowCounts: Record<string, number>
  runs: Array<{runId: string; artifactUri: string | null}>
  modelVersions: Array<{name: string; version: string; source: string | null}>
  /** Its schema (sqlite_master), to hold against what MLflow makes at its revision. */
  objects: SchemaObject[]
}

export interface DeepVerifyDeps {
  scratch(): Promise<{path: string; remove(): Promise<void>}>
  expectedManifest(archive: string): Promise<BackupManifest>
  extractVerified(archive: string, dir: string, expected: BackupManifest): Promise<BackupManifest>
  /** Real MLflow's schema in a scratch SQLite file, loaded from table files (restore's loader). */
  prepareDatabase: PrepareDatabase
  inspect(sqliteFile: string): RestoredDatabase
  /** What MLflow's migrations make at `revision`, or undefined when the MLflow this tool restores with does not know it. */
  expectedSchema(revision: string): Promise<ExpectedSchema | undefined>
  join(...parts: string[]): string
}

export interface DeepVerifyResult {
  id: string
  revision: string | null
  tables: number
  rows: number
  /** Artifact locations that rows reference and the backup lacks. */
  missing: string[]
  /** Run directories in the backup without a run row. */
  orphans: string[]
  /** References outside the backed-up store (another bucket, a local path), not checkable here. */
  unchecked: number
  /** Those references, named: "model NAME version N: SOURCE". */
  uncheckedReferences: string[]
}

const RUN_ID = /^[0-9a-f]{32}$/

/** The path inside the backed-up store for a proxied URI (mlflow-artifacts:/1/abc/artifacts), else undefined. */
export function proxiedPath(uri: string | null): string | undefined {
  const match = uri ? /^mlflow-artifacts:(?:\/\/[^/]*)?\/+(.*)$/.exec(uri) : null
  return match ? match[1].replace(/\/+$/, '') : undefined
}

/** Missing references and orphan run directories, from the rows and the archived artifact paths. Pure. */
export function artifactFindings(
  db: Pick<RestoredDatabase, 'runs' | 'modelVersions'>,
  archived: string[],
): {missing: string[]; orphans: string[]; unchecked: number; uncheckedReferences: string[]} {
  const present = new Set<string>()
  for (const file of archived) {
    const parts = file.split('/')
    for (let i = 1; i <= parts.length; i++) present.add(parts.slice(0, i).join('/'))
  }
  const runUris = new Map(db.runs.map((run) => [run.runId, run.artifactUri]))
  const missing: string[] = []
  const uncheckedReferences: string[] = []
  for (const version of db.modelVersions) {
    // runs:/<run id>/<path> is relative to that run's artifact URI.
    const viaRun = /^runs:\/([0-9a-f]{32})\/?(.*)$/.exec(version.source ?? '')
    const uri = viaRun ? `${runUris.get(viaRun[1]) ?? ''}/${viaRun[2]}` : version.source
    const path = proxiedPath(uri)
    if (path === undefined)
      uncheckedReferences.push(`model ${version.name} version ${version.version}: ${version.source}`)
    else if (!present.has(path)) missing.push(`model ${version.name} version ${version.version}: ${version.source}`)
  }
  const orphans = new Set<string>()
  for (const file of archived) {
    const [experiment, runId] = file.split('/')
    if (runId && RUN_ID.test(runId) && !runUris.has(runId)) orphans.add(`${experiment}/${runId}`)
  }
  return {missing, orphans: [...orphans].sort(), unchecked: uncheckedReferences.length, uncheckedReferences}
}

/**
 * What SQLite's own checks and the manifest's row counts say about a database built from a backup (format 1:
 * loaded by MLflow; format 2: the archived file itself). Empty when sound. Pure.
 */
export function databaseFindings(
  db: Pick<RestoredDatabase, 'integrity' | 'foreignKeyViolations' | 'rowCounts'>,
  manifest: Pick<BackupManifest, 'rowCounts'>,
): string[] {
  const reasons = [
    ...db.integrity.map((line) => `integrity: ${line}`),
    ...db.foreignKeyViolations.map((line) => `foreign key: ${line}`),
  ]
  for (const [table, expected] of Object.entries(manifest.rowCounts)) {
    if (table !== 'alembic_version' && (db.rowCounts[table] ?? 0) !== expected)
      reasons.push(`${table} holds ${db.rowCounts[table] ?? 0} rows, the manifest says ${expected}`)
  }
  return reasons
}

/** What in a restored database is not what MLflow makes at the backup's revision, as findings. */
async function schemaFindings(
  deps: Pick<DeepVerifyDeps, 'expectedSchema'>,
  manifest: BackupManifest,
  objects: SchemaObject[],
): Promise<string[]> {
  const schema = await deps.expectedSchema(manifest.alembicRevision!)
  if (!schema)
    return [`schema revision ${manifest.alembicRevision} is not one the MLflow this mlflowctl restores with knows`]
  return [
    ...foreignObjects(objects, schema).map(({object, why}) => `${describeObject(object)} is not MLflow's (${why})`),
    ...missingTables(objects, schema).map((table) => `MLflow's table ${table} is missing`),
  ]
}

/** @throws CheckFailedError BACKUP_DEEP_FAILED with every finding that makes the backup unsafe to rely on */
export async function deepVerify(deps: DeepVerifyDeps, archive: string): Promise<DeepVerifyResult> {
  const scratch = await deps.scratch()
  try {
    const manifest = await deps.extractVerified(archive, scratch.path, await deps.expectedManifest(archive))
    const fail = (reasons: string[]) =>
      new CheckFailedError('BACKUP_DEEP_FAILED', `${manifest.id}: ${reasons.join('; ')}.`, {
        suggestions: [
          'The archive is intact but its content is not; use another backup, and check the source database and artifact store.',
        ],
      })
    if (!manifest.alembicRevision) throw fail(['it holds no MLflow database (no alembic revision)'])
    // Format 2 carries the database file itself: it is checked as it is, without a load.
    const sqliteFile = holdsSqliteFile(manifest)
    const file = sqliteFile ? deps.join(scratch.path, SQLITE_FILE_ENTRY) : deps.join(scratch.path, 'deep-verify.db')
    const dbDir = deps.join(scratch.path, 'db')
    // Table files of another application's tables would fail the load: named as findings instead.
    const schema = await deps.expectedSchema(manifest.alembicRevision)
    const foreignTables = schema ? foreignTablesOf(manifest, schema) : []
    if (foreignTables.length > 0)
      throw fail(foreignTables.map(({object, why}) => `${describeObject(object)} is not MLflow's (${why})`))
    const loaded = sqliteFile
      ? countsOf(manifest.rowCounts)
      : await loadPrepared(
          deps.prepareDatabase(`sqlite:///${file}`, manifest.alembicRevision, dbDir, {
            tables: Object.keys(manifest.rowCounts),
          }),
          {tableFiles: dbDir},
        )
    const db = deps.inspect(file)
    const reasons = [...(await schemaFindings(deps, manifest, db.objects)), ...databaseFindings(db, manifest)]
    const archived =
      manifest.artifacts.mode === 'none'
        ? []
        : manifest.files
            .filter((entry) => entry.path.startsWith('artifacts/'))
            .map((entry) => entry.path.slice('artifacts/'.length))
    const artifacts =
      manifest.artifacts.mode === 'none'
        ? {missing: [], orphans: [], unchecked: 0, uncheckedReferences: []}
        : artifactFindings(db, archived)
    reasons.push(...artifacts.missing.map((line) => `missing artifact for ${line}`))
    if (reasons.length > 0) throw fail(reasons)
    return {id: manifest.id, revision: manifest.alembicRevision, tables: loaded.tables, rows: loaded.rows, ...artifacts}
  } finally {
    await scratch.remove()
  }
}
