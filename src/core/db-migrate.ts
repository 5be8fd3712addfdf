/**
 * `db migrate`: the exact migrations from the database's revision to a release (dry run), a rehearsal of the
 * real `mlflow db upgrade` on a copy compared with a freshly initialised schema, and the migration itself,
 * which needs a verified backup young enough. Pure; the adapter copies, runs MLflow and reads the repository.
 */
import {CheckFailedError, UsageError} from '../errors.js'
import {
  schemaStatus,
  type CatalogOverlay,
  type MigrationCatalog,
  type PendingRevision,
  type SchemaStatus,
} from './catalog.js'

export interface TableShape {
  columns: Record<string, {type: string; nullable: boolean}>
  indexes: string[]
  primaryKey: string
  foreignKeys: string[]
}

export interface SchemaDescription {
  revision: string | null
  tables: Record<string, TableShape>
}

export interface Rehearsal {
  ok: boolean
  seconds?: number
  revision?: string | null
  error?: string
  /** Differences between the upgraded copy and a fresh database at the target's head. */
  differences: string[]
  copiedFrom: string
}

export interface MigrateDeps {
  catalog: MigrationCatalog
  overlay: CatalogOverlay
  probe(): Promise<{
    tables: string[]
    revision: string | null
    hasVersionTable: boolean
    rowEstimates: Record<string, number>
  }>
  /** Copies the database, runs the target's upgrade on the copy and describes it and a fresh one. */
  rehearse(targetVersion: string): Promise<Rehearsal>
  /** Verified backups of this database's engine in the repository, newest first (empty without --repo). */
  verifiedBackups(): Promise<Array<{id: string; createdAt: string; revision: string | null}>>
  upgrade(targetVersion: string): Promise<{seconds: number; revision: string | null}>
  confirm(question: string): Promise<boolean>
  now(): Date
}

export interface MigrateOptions {
  database: string
  to: string
  dryRun: boolean
  rehearse: boolean
  maxBackupAgeMs: number
  /** Only a dry run or rehearsal is possible (a deployment migrates itself when it starts). */
  readOnlyTarget?: string
}

export interface MigrateResult {
  database: string
  status: SchemaStatus
  pending: PendingRevision[]
  estimate: {heavySteps: number; rowsTouched: number; tables: Record<string, number>}
  rehearsal?: Rehearsal
  migrated?: {seconds: number; revision: string | null; backupId: string}
}

/** What differs between two reflected schemas; column types compare by their base name. Pure. */
export function diffSchemas(upgraded: SchemaDescription, fresh: SchemaDescription): string[] {
  const out: string[] = []
  if (upgraded.revision !== fresh.revision)
    out.push(`revision ${upgraded.revision} (upgraded) vs ${fresh.revision} (fresh)`)
  const names = [...new Set([...Object.keys(upgraded.tables), ...Object.keys(fresh.tables)])].sort()
  for (const name of names) {
    const a = upgraded.tables[name]
    const b = fresh.tables[name]
    if (!a || !b) {
      out.push(`table ${name} only in the ${a ? 'upgraded' : 'fresh'} schema`)
      continue
    }
    for (const column of [...new Set([...Object.keys(a.columns), ...Object.keys(b.columns)])].sort()) {
      const [x, y] = [a.columns[column], b.columns[column]]
      if (!x || !y) out.push(`${name}.${column} only in the ${x ? 'upgraded' : 'fresh'} schema`)
      else if (x.type !== y.type || x.nullable !== y.nullable)
        out.push(
          `${name}.${column}: ${x.type}${x.nullable ? ' null' : ' not null'} (upgraded) vs ${y.type}${y.nullable ? ' null' : ' not null'} (fresh)`,
        )
    }
    if (a.primaryKey !== b.primaryKey) out.push(`${name} primary key (${a.primaryKey}) vs (${b.primaryKey})`)
    const setDiff = (what: string, left: string[], right: string[]) => {
      for (const item of left.filter((x) => !right.includes(x)))
        out.push(`${name} ${what} ${item} only in the upgraded schema`)
      for (const item of right.filter((x) => !left.includes(x)))
        out.push(`${name} ${what} ${item} only in the fresh schema`)
    }
    setDiff('index on', a.indexes, b.indexes)
    setDiff('foreign key', a.foreignKeys, b.foreignKeys)
  }
  return out
}

const REFUSED: Partial<Record<SchemaStatus['kind'], string>> = {
  ahead: 'DB_AHEAD_OF_TARGET',
  'foreign-alembic': 'FOREIGN_ALEMBIC_REVISION',
  diverged: 'REVISION_NOT_ON_TARGET_CHAIN',
  'pre-1.0': 'DB_UNVERSIONED',
  partial: 'DB_PARTIAL',
}

/**
 * @throws CheckFailedError for a database the target cannot migrate (ahead, foreign, diverged, partial),
 * REHEARSAL_FAILED, BACKUP_REQUIRED; UsageError DECLINED / MIGRATE_VIA_UPGRADE.
 */
export async function migrateDatabase(deps: MigrateDeps, options: MigrateOptions): Promise<MigrateResult> {
  const probe = await deps.probe()
  const status = schemaStatus(deps.catalog, deps.overlay, probe, options.to, probe.rowEstimates)
  const refused = REFUSED[status.kind]
  if (refused)
    throw new CheckFailedError(refused, `${options.database}: ${status.explanation}`, {
      suggestions: [
        'mlflowctl db status shows the details; MLflow has no downgrades: restore a backup made under the target release instead.',
      ],
    })
  const tables: Record<string, number> = {}
  for (const step of status.pending)
    for (const table of step.tables ?? []) if (table.rows !== undefined) tables[table.table] = table.rows
  const estimate = {
    heavySteps: status.pending.filter((p) => p.heavy).length,
    rowsTouched: Object.values(tables).reduce((a, b) => a + b, 0),
    tables,
  }
  const result: MigrateResult = {database: options.database, status, pending: status.pending, estimate}
  if (status.kind === 'current') return result
  if (options.rehearse) {
    result.rehearsal = await deps.rehearse(options.to)
    if (!result.rehearsal.ok) {
      throw new CheckFailedError(
        'REHEARSAL_FAILED',
        `Rehearsing the upgrade to MLflow ${options.to} on a copy of ${options.database} failed: ${result.rehearsal.error}. The database was not touched.`,
        {suggestions: ['Fix the cause (a conflicting object, an old SQLite) and rehearse again.']},
      )
    }
  }
  if (options.dryRun || (options.rehearse && options.readOnlyTarget)) return result
  if (options.readOnlyTarget)
    throw new UsageError(
      'MIGRATE_VIA_UPGRADE',
      `${options.readOnlyTarget} migrates its database itself when the new MLflow starts.`,
      {
        suggestions: [
          `mlflowctl upgrade apply --guid GUID --to ${options.to} (backup, deploy, verify, roll back on failure).`,
        ],
      },
    )
  // The newest verified backup at the current revision; its age counts from when it was taken, not verified.
  const newest = (await deps.verifiedBackups()).find((backup) => backup.revision === status.revision)
  const age = newest ? deps.now().getTime() - Date.parse(newest.createdAt) : Number.POSITIVE_INFINITY
  if (!newest || age > options.maxBackupAgeMs) {
    throw new CheckFailedError(
      'BACKUP_REQUIRED',
      `Migrating ${options.database} needs a verified backup at its current revision ${status.revision} made within --max-backup-age; ${newest ? `the newest verified one (${newest.id}) is ${Math.round(age / 60_000)} min old` : 'there is none'}.`,
      {
        suggestions: [
          'mlflowctl backup create --source DB --repo REPO, then mlflowctl backup verify ID --repo REPO',
          'then: mlflowctl db migrate --db DB --to VERSION --repo REPO',
        ],
      },
    )
  }
  if (
    !(await deps.confirm(
      `Run ${status.pending.length} migrations on ${options.database} (to MLflow ${options.to})? Backup ${newest.id} holds the current data.`,
    ))
  )
    throw new UsageError('DECLINED', 'Nothing changed.')
  const migrated = await deps.upgrade(options.to)
  return {...result, migrated: {...migrated, backupId: newest.id}}
}
