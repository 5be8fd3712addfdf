// What `db status` needs from a database, read-only: its tables, alembic_version, and cheap row estimates
// for the tables heavy migrations work over (never COUNT(*): SQLite's max(rowid), PostgreSQL's reltuples).
import Database from 'better-sqlite3'
import {existsSync, statSync} from 'node:fs'
import {join, resolve} from 'node:path'

import {parseDatabaseUrl, type DatabaseTarget} from '../../core/database-url.js'
import {connectOpsStatus, type ConnectTransferOptions} from '../connect/ops-client.js'
import {ExternalError, UsageError} from '../../errors.js'
import {withPostgres} from './postgres.js'
import {withSqlServer} from './sqlserver.js'
import {quoteIdentifier} from '../../core/backup/tables.js'

export interface SchemaProbe {
  engine: 'sqlite' | 'postgresql' | 'mssql'
  tables: string[]
  hasVersionTable: boolean
  revision: string | null
  rowEstimates: Record<string, number>
}

const BIG_TABLES = [
  'metrics',
  'latest_metrics',
  'params',
  'tags',
  'runs',
  'spans',
  'trace_info',
  'model_versions',
  'registered_models',
]

function probeSqlite(path: string): SchemaProbe {
  let db: Database.Database
  try {
    db = new Database(path, {readonly: true, fileMustExist: true})
  } catch (error) {
    throw new ExternalError('DATABASE_UNREACHABLE', `Cannot open ${path}: ${(error as Error).message}.`)
  }
  try {
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{
        name: string
      }>
    ).map((row) => row.name)
    const hasVersionTable = tables.includes('alembic_version')
    const revision = hasVersionTable
      ? ((db.prepare('SELECT version_num FROM alembic_version').get() as {version_num: string} | undefined)
          ?.version_num ?? null)
      : null
    const rowEstimates: Record<string, number> = {}
    for (const table of BIG_TABLES.filter((t) => tables.includes(t)))
      rowEstimates[table] = Number(
        (db.prepare(`SELECT coalesce(max(rowid), 0) AS n FROM ${quoteIdentifier(table)}`).get() as {n: number}).n,
      )
    return {engine: 'sqlite', tables, hasVersionTable, revision, rowEstimates}
  } finally {
    db.close()
  }
}

export async function probeSchema(target: DatabaseTarget): Promise<SchemaProbe> {
  if (target.engine === 'sqlite') return probeSqlite(target.sqlitePath!)
  if (target.engine === 'mssql') return probeSqlServer(target)
  if (target.engine !== 'postgresql')
    throw new UsageError(
      'ENGINE_NOT_SUPPORTED',
      `db status reads SQLite, PostgreSQL and SQL Server; ${target.engine} is not supported yet.`,
    )
  return withPostgres(target, async (client) => {
    const tables = (
      await client.query<{name: string}>(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
      )
    ).rows.map((row) => row.name)
    const hasVersionTable = tables.includes('alembic_version')
    const revision = hasVersionTable
      ? ((await client.query<{version_num: string}>('SELECT version_num FROM alembic_version')).rows[0]?.version_num ??
        null)
      : null
    const stats = await client.query<{name: string; rows: number}>(
      "SELECT c.relname AS name, c.reltuples::float8 AS rows FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND c.relname = ANY($1)",
      [BIG_TABLES],
    )
    // reltuples is -1 (PostgreSQL 14+) or 0 before the first ANALYZE: unknown, not empty.
    const rowEstimates = Object.fromEntries(
      stats.rows.filter((row) => row.rows > 0).map((row) => [row.name, Math.round(row.rows)]),
    )
    return {engine: 'postgresql', tables, hasVersionTable, revision, rowEstimates}
  })
}

/** SQL Server (untested here, see sqlserver.ts): the default schema's tables, alembic_version, and the row counts
 * sys.partitions keeps (metadata, never COUNT(*)). */
function probeSqlServer(target: DatabaseTarget): Promise<SchemaProbe> {
  return withSqlServer(target, async (pool) => {
    const tables = (
      await pool.request().query<{name: string}>('SELECT name FROM sys.tables WHERE schema_id = SCHEMA_ID()')
    ).recordset.map((row) => row.name)
    const hasVersionTable = tables.includes('alembic_version')
    const revision = hasVersionTable
      ? ((await pool.request().query<{version_num: string}>('SELECT version_num FROM alembic_version')).recordset[0]
          ?.version_num ?? null)
      : null
    const stats = await pool
      .request()
      .query<{name: string; rows: number}>(
        'SELECT t.name AS name, SUM(p.rows) AS rows FROM sys.tables t JOIN sys.partitions p ON p.object_id = t.object_id AND p.index_id IN (0, 1) WHERE t.schema_id = SCHEMA_ID() GROUP BY t.name',
      )
    const rowEstimates = Object.fromEntries(
      stats.recordset.filter((row) => BIG_TABLES.includes(row.name)).map((row) => [row.name, Number(row.rows)]),
    )
    return {engine: 'mssql', tables, hasVersionTable, revision, rowEstimates}
  })
}

/** --db as the user wrote it: an app-data directory (its mlflow.db) or a URL. @throws UsageError DATABASE_NOT_FOUND */
export function databaseFromFlag(raw: string): {target: DatabaseTarget; url: string} {
  const dir = resolve(raw)
  if (!raw.includes('://') && !existsSync(dir))
    throw new UsageError('DATABASE_NOT_FOUND', `${dir} does not exist.`, {
      suggestions: [
        'Pass an app-data directory (the one holding mlflow.db) or a database URL (sqlite:////abs/path/mlflow.db, postgresql://…).',
      ],
    })
  const url =
    !raw.includes('://') && existsSync(dir) && statSync(dir).isDirectory() ? `sqlite:///${join(dir, 'mlflow.db')}` : raw
  const target = parseDatabaseUrl(url)
  if (target.engine === 'sqlite' && !existsSync(target.sqlitePath!))
    throw new UsageError('DATABASE_NOT_FOUND', `${target.sqlitePath} does not exist.`)
  return {target, url}
}

/** A deployment's schema as its extension reports it (ops status), in the shape of a probe. */
export async function probeDeployment(
  transfer: ConnectTransferOptions,
  guid: string,
): Promise<SchemaProbe & {database: string}> {
  const status = await connectOpsStatus(transfer, guid)
  // Extensions before status tables were reported tell only an empty schema apart.
  const empty = status.schemaState === 'empty'
  const tables =
    status.tables?.filter((table) => !table.startsWith('alembic_')) ?? (empty ? [] : ['experiments', 'runs'])
  return {
    engine: 'sqlite',
    tables,
    hasVersionTable: !empty,
    revision: status.dbRevision ?? null,
    rowEstimates: status.rowEstimates ?? {},
    database: `connect:${guid} (${status.backendStore ?? 'unknown store'})`,
  }
}
