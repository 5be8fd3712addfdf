// SQL Server through `mssql` (tedious), with the credentials of credentials.ts (Entra tokens per login, or a SQL
// login). UNTESTED against a real SQL Server, which cannot run here: the tests reach this code as far as the
// network (a refused connection is DATABASE_UNREACHABLE, no password in the message). mssql and its driver load
// on first use: every command that touches a database imports this module, and most never reach SQL Server.
import type mssql from 'mssql'

import {classifyDatabaseError} from '../../core/database-errors.js'
import type {DatabaseTarget} from '../../core/database-url.js'
import {sqlServerConfig, type CredentialOverrides} from './credentials.js'

/** Runs `fn` on one connection pool to `target`, closed afterwards. @throws DATABASE_UNREACHABLE, DATABASE_AUTH_FAILED */
export async function withSqlServer<T>(
  target: DatabaseTarget,
  fn: (pool: mssql.ConnectionPool) => Promise<T>,
  overrides: CredentialOverrides = {},
): Promise<T> {
  let pool: mssql.ConnectionPool
  try {
    const {default: driver} = await import('mssql')
    pool = await new driver.ConnectionPool(
      (await sqlServerConfig(target, overrides)) as unknown as mssql.config,
    ).connect()
  } catch (error) {
    throw classifyDatabaseError(target, error)
  }
  try {
    return await fn(pool)
  } finally {
    await pool.close().catch(() => undefined)
  }
}
