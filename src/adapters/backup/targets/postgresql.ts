// A PostgreSQL database: MLflow's tables in its current schema (another application's tables are not MLflow data),
// locked by an advisory lock on a connection of its own, which the server releases when that connection dies.
import {KNOWN_MLFLOW_TABLES} from '../../../core/backup/tables.js'
import type {RestoreTarget} from '../../../core/backup/restore.js'
import {parseDatabaseUrl} from '../../../core/database-url.js'
import {withPostgres} from '../../db/postgres.js'
import {dirname, join} from 'node:path'

import {ownScratch, targetLocked, type TargetSite} from './site.js'

/** PostgreSQL advisory lock key of restores into a database (restore_db.py holds another, its own). */
const POSTGRES_TARGET_LOCK = 0x6d6c66637472

/** Holds PostgreSQL's advisory lock on its own connection until the returned release. @throws TARGET_LOCKED */
function lockPostgres(url: string, display: string, purpose: string): Promise<() => Promise<void>> {
  return new Promise((taken, refused) => {
    let letGo!: () => void
    const released = new Promise<void>((resolve) => (letGo = resolve))
    const session = withPostgres(parseDatabaseUrl(url), async (client) => {
      await client.query('SELECT set_config($1, $2, false)', [
        'application_name',
        `mlflowctl ${purpose} (pid ${process.pid})`,
      ])
      const got = (await client.query<{got: boolean}>('SELECT pg_try_advisory_lock($1) AS got', [POSTGRES_TARGET_LOCK]))
        .rows[0].got
      if (!got) {
        const holder = (
          await client.query<{name: string; since: Date | null; addr: string | null}>(
            `SELECT a.application_name AS name, a.backend_start AS since, host(a.client_addr) AS addr
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`,
            [POSTGRES_TARGET_LOCK],
          )
        ).rows[0]
        throw targetLocked(
          display,
          holder
            ? `${holder.name || 'a session'} from ${holder.addr ?? 'a local socket'}, since ${holder.since?.toISOString() ?? '?'}`
            : 'a session that holds its advisory lock',
        )
      }
      taken(async () => {
        letGo()
        await session.catch(() => undefined)
      })
      await released
      await client.query('SELECT pg_advisory_unlock($1)', [POSTGRES_TARGET_LOCK]).catch(() => undefined)
    })
    session.catch(refused)
  })
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

export function postgresqlSite(target: Extract<RestoreTarget, {kind: 'postgresql'}>): TargetSite {
  return {
    scratchRoot: (dataDir, localArtifactsTo) => (localArtifactsTo ? dirname(localArtifactsTo) : ownScratch(dataDir)),
    takesArtifactsTo: true,
    checkKind: async () => undefined,
    async inspect() {
      const names = await withPostgres(parseDatabaseUrl(target.url), async (client) =>
        (
          await client.query<{name: string}>(
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'alembic_version'",
          )
        ).rows.map((row) => row.name),
      )
      const mlflows = names.filter((name) => KNOWN_MLFLOW_TABLES.has(name))
      return {holdsData: mlflows.length > 0, found: [`${mlflows.length} MLflow tables`], foreign: []}
    },
    lockFiles: () => [],
    safetyBackupOf: (dataDir) => join(dataDir, 'postgresql'),
    databaseLock: {
      key: `postgresql ${target.url}`,
      take: (purpose) => lockPostgres(target.url, target.display, purpose),
    },
    committed: async (database) =>
      database.display === target.display ? postgresCommitted(target.url, database.mark) : undefined,
  }
}
