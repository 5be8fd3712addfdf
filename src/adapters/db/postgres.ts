// Opens PostgreSQL through the credential layer and reads what every caller needs first.
import pg from 'pg'

import {classifyDatabaseError} from '../../core/database-errors.js'
import type {DatabaseTarget} from '../../core/database-url.js'
import {postgresConnection, type CredentialOverrides} from './credentials.js'

export interface PostgresProbe {
  user: string
  serverVersion: string
  /** MLflow's tracking schema revision, or null when the database has no alembic_version table. */
  alembicRevision: string | null
}

/**
 * Runs `fn` on one connection, then closes it and whatever the credential holds open.
 * @throws AuthError DATABASE_AUTH_FAILED or ExternalError DATABASE_UNREACHABLE, with hints
 */
export async function withPostgres<T>(
  target: DatabaseTarget,
  fn: (client: pg.Client) => Promise<T>,
  overrides: CredentialOverrides = {},
): Promise<T> {
  let connection
  try {
    connection = await postgresConnection(target, overrides)
  } catch (error) {
    throw classifyDatabaseError(target, error)
  }
  const client = new pg.Client(connection.config)
  client.on('error', () => undefined) // a dropped connection surfaces through the pending query instead
  try {
    await client.connect()
  } catch (error) {
    connection.close()
    throw classifyDatabaseError(target, error)
  }
  try {
    return await fn(client)
  } finally {
    await client.end().catch(() => undefined)
    connection.close()
  }
}

export function probePostgres(target: DatabaseTarget, overrides: CredentialOverrides = {}): Promise<PostgresProbe> {
  return withPostgres(
    target,
    async (client) => {
      const {rows} = await client.query<{user: string; version: string; has_alembic: string | null}>(
        "SELECT current_user AS user, current_setting('server_version') AS version, to_regclass('alembic_version')::text AS has_alembic",
      )
      const revision = rows[0].has_alembic
        ? ((await client.query<{version_num: string}>('SELECT version_num FROM alembic_version')).rows[0]
            ?.version_num ?? null)
        : null
      return {user: rows[0].user, serverVersion: rows[0].version, alembicRevision: revision}
    },
    overrides,
  )
}
