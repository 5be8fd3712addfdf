/**
 * A restore's checks of what it is about to put in place against what MLflow makes at the backup's revision
 * (schema-objects.ts): a revision this mlflowctl's MLflow does not know, objects that are not MLflow's (a trigger
 * that would fire on the restore's own rewrite, a view where a table belongs, another application's table), and
 * rows that changed between the gate's count and the swap. A restore refuses them (exit 6), or with
 * --drop-foreign-objects drops them and names each.
 */
import {CheckFailedError} from '../../errors.js'
import {databaseFindings, type RestoredDatabase} from './deep-verify.js'
import {holdsSqliteFile, type BackupManifest} from './format.js'
import {
  describeObject,
  foreignObjects,
  missingTables,
  type ExpectedSchema,
  type ForeignObject,
  type SchemaObject,
} from './schema-objects.js'

/** The refusal of a backup whose revision the MLflow this mlflowctl restores with does not know. Pure. */
export function revisionUnknown(id: string, revision: string): CheckFailedError {
  return new CheckFailedError(
    'BACKUP_REVISION_UNKNOWN',
    `Backup ${id} is at schema revision ${revision}, which the MLflow this mlflowctl restores with does not know (a newer MLflow's, or not MLflow's). Nothing was replaced.`,
    {suggestions: ['Restore it with a newer mlflowctl (mlflowctl db status shows the revisions this one knows).']},
  )
}

/** The refusal of objects that are not MLflow's, each named. Pure. */
export function foreignSchemaError(id: string, foreign: ForeignObject[]): CheckFailedError {
  const named = foreign.map(({object, why}) => `${describeObject(object)} (${why})`)
  return new CheckFailedError(
    'BACKUP_SCHEMA_FOREIGN',
    `Backup ${id} holds what MLflow's migrations do not create: ${named.join('; ')}. Nothing was replaced.`,
    {
      suggestions: [
        'Restore it without them: add --drop-foreign-objects (the result names each object dropped).',
        'A backup made by this mlflowctl leaves such objects out; one that holds them was made elsewhere or changed.',
      ],
    },
  )
}

/** The tables of a table-file backup (a PostgreSQL source) that MLflow does not make at the revision. Pure. */
export function foreignTablesOf(manifest: BackupManifest, schema: ExpectedSchema): ForeignObject[] {
  if (holdsSqliteFile(manifest)) return []
  const tables: SchemaObject[] = Object.keys(manifest.rowCounts).map((name) => ({
    type: 'table',
    name,
    table: name,
    sql: null,
  }))
  return foreignObjects(tables, schema)
}

/** The manifest as restored: without the tables that are dropped. Pure. */
export function withoutTables(manifest: BackupManifest, dropped: ForeignObject[]): BackupManifest {
  const gone = new Set(dropped.filter((f) => f.object.type === 'table').map((f) => f.object.name))
  if (gone.size === 0) return manifest
  return {...manifest, rowCounts: Object.fromEntries(Object.entries(manifest.rowCounts).filter(([t]) => !gone.has(t)))}
}

export interface SnapshotGateDeps {
  inspectSqlite(
    file: string,
  ): Promise<Pick<RestoredDatabase, 'integrity' | 'foreignKeyViolations' | 'rowCounts' | 'objects'>>
  dropSqliteObjects(file: string, objects: SchemaObject[]): Promise<void>
}

/**
 * A backup's SQLite file, before anything uses it: its schema against MLflow's (objects that are not MLflow's refused,
 * or dropped with `drop`), every MLflow table present, SQLite's checks and the manifest's row counts.
 * @returns the objects dropped
 * @throws CheckFailedError BACKUP_SCHEMA_FOREIGN, BACKUP_CORRUPT
 */
export async function gateSnapshot(
  deps: SnapshotGateDeps,
  manifest: BackupManifest,
  schema: ExpectedSchema,
  snapshot: string,
  inspected: ReturnType<SnapshotGateDeps['inspectSqlite']> | undefined,
  drop: boolean,
): Promise<ForeignObject[]> {
  const database = await (inspected ?? deps.inspectSqlite(snapshot))
  const foreign = foreignObjects(database.objects, schema)
  if (foreign.length > 0 && !drop) throw foreignSchemaError(manifest.id, foreign)
  const findings = [
    ...databaseFindings(database, withoutTables(manifest, foreign)),
    ...missingTables(database.objects, schema).map((table) => `MLflow's table ${table} is missing`),
  ]
  if (findings.length > 0)
    throw new CheckFailedError(
      'BACKUP_CORRUPT',
      `The database in backup ${manifest.id} fails its checks (${findings.slice(0, 5).join('; ')}); nothing was replaced.`,
      {suggestions: ['Use another backup (mlflowctl backup list).']},
    )
  if (foreign.length > 0)
    await deps.dropSqliteObjects(
      snapshot,
      foreign.map((f) => f.object),
    )
  return foreign
}

/**
 * The rows of a SQLite file after the restore rewrote its artifact locations, against the manifest's: nothing a
 * rewrite does may add or remove a row, so a difference means something in the file acted on it.
 * @throws CheckFailedError BACKUP_CORRUPT
 */
export function checkRowsAfterRewrite(manifest: BackupManifest, rowCounts: Record<string, number>): void {
  const findings = databaseFindings({integrity: [], foreignKeyViolations: [], rowCounts}, manifest)
  if (findings.length > 0)
    throw new CheckFailedError(
      'BACKUP_CORRUPT',
      `Rewriting the artifact locations of backup ${manifest.id} changed its rows (${findings.slice(0, 5).join('; ')}); nothing was replaced.`,
      {suggestions: ['Use another backup (mlflowctl backup list), and check where this one came from.']},
    )
}
