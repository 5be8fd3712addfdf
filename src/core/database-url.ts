/**
 * Database URLs as doctor, backup and db take them, with the cloud authentication chosen by `?auth=`:
 *
 * - `sqlite:////abs/path.db` (SQLAlchemy's form: four slashes for an absolute path)
 * - `postgresql://user:password@host:5432/db` (password auth; `sslmode`, `sslrootcert` as in libpq)
 * - `postgresql://user@host:5432/db?auth=rds-iam&region=us-east-1&sslrootcert=/path/global-bundle.pem`
 * - `postgresql://user@host:5432/db?auth=entra` (Azure Database for PostgreSQL, Entra ID token)
 * - `postgresql://user@/db?auth=cloudsql&instance=project:region:instance[&ip=PRIVATE]` (IAM login unless a
 *   password is given)
 * - `mssql://user@host:1433/db?auth=entra` or `mssql://user:password@host/db`
 *
 * Pure: parsing only. The adapter (src/adapters/db) turns a DatabaseTarget into a driver config.
 */
import {UsageError} from '../errors.js'
import {redact} from './redact.js'

export type DatabaseEngine = 'sqlite' | 'postgresql' | 'mssql'
export type DatabaseAuth = 'none' | 'password' | 'rds-iam' | 'entra' | 'cloudsql'

export interface DatabaseTarget {
  engine: DatabaseEngine
  auth: DatabaseAuth
  /** For display and errors: the URL without its password. */
  display: string
  sqlitePath?: string
  host?: string
  port?: number
  user?: string
  password?: string
  database?: string
  region?: string
  /** libpq sslmode; token auth defaults to verify-full (RDS, Entra) or is handled by the connector (Cloud SQL). */
  sslmode?: 'disable' | 'require' | 'verify-ca' | 'verify-full'
  sslrootcert?: string
  instance?: string
  ipType?: 'PUBLIC' | 'PRIVATE' | 'PSC'
}

const AUTHS: Record<DatabaseEngine, DatabaseAuth[]> = {
  sqlite: ['none'],
  postgresql: ['password', 'rds-iam', 'entra', 'cloudsql'],
  mssql: ['password', 'entra'],
}
const DEFAULT_PORT: Record<string, number> = {postgresql: 5432, mssql: 1433}
const NO_HOST = 'no-host.invalid'
const SSLMODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const

/** Everything between "://" and the host: user and password, which may hold unencoded "/" or "@". */
function authorityOf(raw: string): string {
  const start = raw.indexOf('://')
  if (start < 0) return ''
  const rest = raw.slice(start + 3)
  const at = rest.lastIndexOf('@', Math.max(0, rest.search(/[?#]/) >= 0 ? rest.search(/[?#]/) : rest.length))
  return at >= 0 ? rest.slice(0, at + 1) : ''
}

/** The URL for messages: the password masked even when it holds characters that break URL parsing. */
export function displayUrl(raw: string): string {
  const authority = authorityOf(raw)
  const colon = authority.indexOf(':')
  if (colon < 0) return redact(raw)
  const start = raw.indexOf('://') + 3
  return redact(`${raw.slice(0, start)}${authority.slice(0, colon)}:***@${raw.slice(start + authority.length)}`)
}

function decode(display: string, part: string, what: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw invalid(display, `the ${what} has a stray "%" (write it as %25)`)
  }
}

function invalid(display: string, why: string, suggestion?: string): UsageError {
  return new UsageError('INVALID_DATABASE_URL', `Database URL ${display}: ${why}.`, {
    suggestions: suggestion ? [suggestion] : [],
  })
}

/** @throws UsageError INVALID_DATABASE_URL naming what is wrong (never echoing a password). */
export function parseDatabaseUrl(raw: string): DatabaseTarget {
  const display = displayUrl(raw)
  if ((authorityOf(raw).match(/@/g) ?? []).length > 1)
    throw invalid(
      display,
      'more than one "@" before the host',
      'Percent-encode "@" in a user name or password as %40 (and "/" as %2F).',
    )
  let url: URL
  try {
    // WHATWG URLs refuse user@ with no host (Cloud SQL URLs have none): parse with a placeholder host.
    url = new URL(raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@]*@)\//i, `$1${NO_HOST}/`))
  } catch {
    throw invalid(
      display,
      'not a URL',
      'Use e.g. postgresql://user@host:5432/mlflow?auth=rds-iam or sqlite:///path/mlflow.db.',
    )
  }
  const scheme = url.protocol.slice(0, -1).split('+')[0]
  const engine = (
    {sqlite: 'sqlite', postgresql: 'postgresql', postgres: 'postgresql', mssql: 'mssql'} as Record<
      string,
      DatabaseEngine
    >
  )[scheme]
  if (!engine) throw invalid(display, `unsupported scheme "${url.protocol}"`, 'Supported: sqlite, postgresql, mssql.')
  if (engine === 'sqlite') {
    // SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute/path.db.
    const path = decode(display, url.pathname, 'path').slice(1)
    if (url.host || !path.startsWith('/'))
      throw invalid(
        display,
        'SQLite needs an absolute path (four slashes, as in SQLAlchemy)',
        'Use sqlite:////abs/path/mlflow.db.',
      )
    return {engine, auth: 'none', display, sqlitePath: path}
  }
  const query = url.searchParams
  const password = url.password ? decode(display, url.password, 'password') : undefined
  const auth = (query.get('auth') ??
    (engine === 'postgresql' && query.get('instance') ? 'cloudsql' : 'password')) as DatabaseAuth
  if (!AUTHS[engine].includes(auth))
    throw invalid(display, `auth=${auth} is not available for ${engine}`, `Use one of: ${AUTHS[engine].join(', ')}.`)
  const user = decode(display, url.username, 'user name')
  const database = decode(display, url.pathname.replace(/^\//, ''), 'database name')
  if (!user) throw invalid(display, 'no user name')
  if (!database) throw invalid(display, 'no database name in the path')
  const sslmode = query.get('sslmode') ?? undefined
  if (sslmode && !(SSLMODES as readonly string[]).includes(sslmode))
    throw invalid(display, `sslmode=${sslmode} is not one of ${SSLMODES.join(', ')}`)
  const target: DatabaseTarget = {
    engine,
    auth,
    display,
    user,
    database,
    password,
    sslrootcert: query.get('sslrootcert') ?? undefined,
    sslmode: sslmode as DatabaseTarget['sslmode'],
  }
  if (auth === 'cloudsql') {
    const instance = query.get('instance') ?? ''
    if (!/^([^:]+:)?[^:]+:[^:]+:[^:]+$/.test(instance))
      throw invalid(display, 'auth=cloudsql needs instance=PROJECT:REGION:INSTANCE')
    const ipType = (query.get('ip') ?? 'PUBLIC').toUpperCase()
    if (!['PUBLIC', 'PRIVATE', 'PSC'].includes(ipType))
      throw invalid(display, `ip=${ipType} is not PUBLIC, PRIVATE or PSC`)
    return {...target, instance, ipType: ipType as DatabaseTarget['ipType']}
  }
  if (!url.hostname || url.hostname === NO_HOST) throw invalid(display, 'no host')
  // Non-special URL schemes keep the host's case; DNS does not care, and RDS host matching must not.
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase()
  const port = url.port ? Number(url.port) : DEFAULT_PORT[engine]
  if (port < 1) throw invalid(display, 'port 0 is not a port')
  if (auth === 'password') return {...target, host, port}
  if (password)
    throw invalid(
      display,
      `auth=${auth} takes no password: a token is generated for each connection`,
      'Remove the password from the URL.',
    )
  // Token logins need TLS; verify-full also checks the host name against the server certificate.
  const withTls = {...target, host, port, sslmode: target.sslmode ?? 'verify-full'}
  if (auth === 'rds-iam') {
    const region = query.get('region') ?? /\.([a-z]{2}(-[a-z]+)+-\d)\.rds\.amazonaws\.com$/.exec(host)?.[1]
    if (!region) throw invalid(display, 'auth=rds-iam needs region=… (it cannot be read from this host name)')
    return {...withTls, region}
  }
  return withTls
}
