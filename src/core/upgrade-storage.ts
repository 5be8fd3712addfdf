// The upgrade's rules about where a deployment's data is: which database the backup reads and a rollback restores
// into, whether the artifacts belong in the backup, and whether a backup is the live database's. Pure: the
// adapter (adapters/upgrade.ts) runs the backup and the restore these describe.
import type {BackupSourceSpec} from './backup/create.js'
import type {RestoreTarget} from './backup/restore.js'
import {parseDatabaseUrl, type DatabaseTarget} from './database-url.js'
import type {LiveState} from './upgrade-plan.js'
import {CheckFailedError, UsageError} from '../errors.js'

/**
 * The external database of a deployment (undefined for local storage), from `--db`, which must be the one the
 * extension reports serving: backing up one database and restoring it into another would lose data.
 * @throws DATABASE_URL_REQUIRED, ENGINE_NOT_SUPPORTED, DATABASE_MISMATCH (all UsageError, exit 2)
 */
export function externalDatabase(
  live: Pick<LiveState, 'guid' | 'status'>,
  databaseUrl: string | undefined,
): DatabaseTarget | undefined {
  if (live.status.storageMode === 'local') return undefined
  if (!databaseUrl) {
    throw new UsageError(
      'DATABASE_URL_REQUIRED',
      `${live.guid} keeps its data in ${live.status.storageMode} storage: the backup and a rollback need the database's URL.`,
      {suggestions: ['Pass --db postgresql://… (or MLFLOWCTL_DB).']},
    )
  }
  const database = parseDatabaseUrl(databaseUrl)
  if (database.engine !== 'postgresql')
    throw new UsageError(
      'ENGINE_NOT_SUPPORTED',
      `Upgrade backups of external storage read PostgreSQL; --db is ${database.engine}.`,
    )
  const served = live.status.backendStore ? safeUrl(live.status.backendStore) : undefined
  const given = safeUrl(databaseUrl)
  // The served URL is redacted (no password) and may name another driver (postgresql+psycopg): host, port and
  // database name decide.
  if (
    served &&
    given &&
    (served.hostname !== given.hostname ||
      (served.port || '5432') !== (given.port || '5432') ||
      served.pathname !== given.pathname)
  ) {
    throw new UsageError(
      'DATABASE_MISMATCH',
      `--db points at ${database.display}, but ${live.guid} uses ${live.status.backendStore}: refusing to back up (and possibly restore into) another database.`,
    )
  }
  return database
}

/**
 * What the upgrade backs up: the extension's own snapshot for local storage (database and artifacts), the database
 * alone for external storage, because migrations change the database only and an external artifact store stays
 * where it is (and may be far larger than the database).
 */
export function upgradeBackupSource(
  live: Pick<LiveState, 'guid'>,
  database: DatabaseTarget | undefined,
  databaseUrl: string | undefined,
): {source: BackupSourceSpec; artifacts: 'all' | 'none'} {
  if (!database) return {source: {kind: 'connect', guid: live.guid}, artifacts: 'all'}
  return {source: {kind: 'postgresql', url: databaseUrl!, display: database.display}, artifacts: 'none'}
}

/** Where a rollback restores the upgrade backup: the same place it was read from. */
export function upgradeRestoreTarget(
  live: Pick<LiveState, 'guid'>,
  database: DatabaseTarget | undefined,
  databaseUrl: string | undefined,
): RestoreTarget {
  return upgradeBackupSource(live, database, databaseUrl).source
}

/**
 * The backup must hold the database the plan was made from: its revision must be the one the extension reported.
 * @throws CheckFailedError BACKUP_OTHER_REVISION (exit 6); nothing has been deployed at that point
 */
export function checkBackupRevision(
  backup: {id: string; revision?: string | null},
  live: Pick<LiveState, 'guid' | 'status'>,
): void {
  if ((backup.revision ?? null) !== (live.status.dbRevision ?? null)) {
    throw new CheckFailedError(
      'BACKUP_OTHER_REVISION',
      `The backup ${backup.id} is at schema ${backup.revision ?? 'none'}, but ${live.guid} reported ${live.status.dbRevision ?? 'none'}: it is not this deployment's database, or it moved. Nothing was deployed.`,
    )
  }
}

function safeUrl(raw: string): URL | undefined {
  try {
    return new URL(raw)
  } catch {
    return undefined
  }
}
