// The one credential layer for database connections made from an ops box (doctor, backup, db): a
// DatabaseTarget in, a driver config out, with tokens generated per connection.
//
// - rds-iam: @aws-sdk/rds-signer through the default AWS credential chain; pg's function-valued password
//   asks for a fresh token whenever a new connection opens.
// - entra: @azure/identity (DefaultAzureCredential unless one is injected), token cached until 5 minutes
//   before expiry; for SQL Server, tedious' `token-credential` authentication calls getToken per login.
// - cloudsql: @google-cloud/cloud-sql-connector with ADC.
import {readFileSync} from 'node:fs'

import type {Signer} from '@aws-sdk/rds-signer'
import type {AccessToken, TokenCredential} from '@azure/identity'
import type pg from 'pg'

import type {DatabaseTarget} from '../../core/database-url.js'
import {ConfigError} from '../../errors.js'

export const AZURE_POSTGRES_SCOPE = 'https://ossrdbms-aad.database.windows.net/.default'
export const AZURE_SQL_SCOPE = 'https://database.windows.net/.default'
const TOKEN_REUSE_MARGIN_MS = 5 * 60 * 1000

export interface CredentialOverrides {
  /** Replaces the default AWS chain (tests, or a profile chosen by the caller). */
  awsCredentials?: ConstructorParameters<typeof Signer>[0]['credentials']
  /** Replaces DefaultAzureCredential. */
  azureCredential?: TokenCredential
}

export interface PostgresConnection {
  config: pg.ClientConfig
  /** Releases what the credential needs in the background (the Cloud SQL connector's refresh timers). */
  close(): void
}

/** A TokenCredential that reuses a token until shortly before it expires (one scope). */
export function cachedTokenCredential(
  inner: TokenCredential,
  scope: string,
): TokenCredential & {token(): Promise<string>} {
  let current: AccessToken | null = null
  const getToken = async (): Promise<AccessToken> => {
    if (!current || current.expiresOnTimestamp - Date.now() < TOKEN_REUSE_MARGIN_MS) {
      const next = await inner.getToken(scope)
      if (!next)
        throw new ConfigError('AZURE_TOKEN_UNAVAILABLE', `The Azure credential returned no token for ${scope}.`, {
          suggestions: [
            'Run `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or use a managed identity.',
          ],
        })
      current = next
    }
    return current
  }
  return {getToken, token: async () => (await getToken()).token}
}

async function defaultAzureCredential(): Promise<TokenCredential> {
  const {DefaultAzureCredential} = await import('@azure/identity')
  return new DefaultAzureCredential()
}

/** libpq's sslmode, mapped to Node TLS options. */
export function tlsOptions(target: DatabaseTarget): pg.ClientConfig['ssl'] {
  const ca = target.sslrootcert ? readFileSync(target.sslrootcert, 'utf8') : undefined
  switch (target.sslmode) {
    case undefined:
    case 'disable':
      return false
    case 'require':
      // libpq: encrypt only, unless a root certificate is given (then it verifies the chain).
      return ca ? {ca, checkServerIdentity: () => undefined} : {rejectUnauthorized: false}
    case 'verify-ca':
      return {ca, checkServerIdentity: () => undefined}
    case 'verify-full':
      return ca ? {ca} : {}
  }
}

/** @throws ConfigError when the target is not PostgreSQL. */
export async function postgresConnection(
  target: DatabaseTarget,
  overrides: CredentialOverrides = {},
): Promise<PostgresConnection> {
  if (target.engine !== 'postgresql')
    throw new ConfigError('NOT_POSTGRESQL', `${target.display} is not a PostgreSQL URL.`)
  const base: pg.ClientConfig = {
    host: target.host,
    port: target.port,
    user: target.user,
    database: target.database,
    ssl: tlsOptions(target),
    connectionTimeoutMillis: 15_000,
  }
  switch (target.auth) {
    case 'password':
      return {config: {...base, password: target.password}, close: () => undefined}
    case 'rds-iam': {
      // Loaded here: the AWS SDK costs every other command a tenth of a second to start.
      const {Signer} = await import('@aws-sdk/rds-signer')
      const signer = new Signer({
        hostname: target.host!,
        port: target.port!,
        username: target.user!,
        region: target.region,
        credentials: overrides.awsCredentials,
      })
      // Signing is local and cheap, so every new connection gets a brand-new token.
      return {config: {...base, password: () => signer.getAuthToken()}, close: () => undefined}
    }
    case 'entra': {
      const credential = cachedTokenCredential(
        overrides.azureCredential ?? (await defaultAzureCredential()),
        AZURE_POSTGRES_SCOPE,
      )
      return {config: {...base, password: () => credential.token()}, close: () => undefined}
    }
    case 'cloudsql': {
      const {AuthTypes, Connector, IpAddressTypes} = await import('@google-cloud/cloud-sql-connector')
      const connector = new Connector()
      let options
      try {
        options = await connector.getOptions({
          instanceConnectionName: target.instance!,
          ipType: IpAddressTypes[target.ipType ?? 'PUBLIC'],
          authType: target.password ? AuthTypes.PASSWORD : AuthTypes.IAM,
        })
      } catch (error) {
        connector.close() // its certificate-refresh timers would keep the process alive
        throw error
      }
      // The connector opens its own mTLS stream; pg must not add TLS on top of it.
      return {
        config: {user: target.user, database: target.database, password: target.password, ...options},
        close: () => connector.close(),
      }
    }
    default:
      throw new ConfigError('UNSUPPORTED_AUTH', `auth=${target.auth} is not available for PostgreSQL.`)
  }
}

/** The `mssql` (tedious) config: Entra through tedious' token-credential type, else a SQL login. UNTESTED
 * against a real SQL Server, which cannot run here; covered by the contract tests that can. */
export async function sqlServerConfig(
  target: DatabaseTarget,
  overrides: CredentialOverrides = {},
): Promise<Record<string, unknown>> {
  if (target.engine !== 'mssql') throw new ConfigError('NOT_SQLSERVER', `${target.display} is not a SQL Server URL.`)
  const authentication =
    target.auth === 'entra'
      ? {
          type: 'token-credential',
          options: {
            credential: cachedTokenCredential(
              overrides.azureCredential ?? (await defaultAzureCredential()),
              AZURE_SQL_SCOPE,
            ),
          },
        }
      : {type: 'default', options: {userName: target.user, password: target.password}}
  return {
    server: target.host,
    port: target.port,
    database: target.database,
    authentication,
    options: {
      encrypt: target.sslmode !== 'disable',
      trustServerCertificate: target.sslmode === 'require' && !target.sslrootcert,
    },
    connectionTimeout: 15_000,
  }
}
