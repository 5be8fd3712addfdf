import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {classifyDatabaseError, databaseErrorHints} from '../../../src/core/database-errors.js'
import {parseDatabaseUrl} from '../../../src/core/database-url.js'
import {AuthError, ExternalError, UsageError} from '../../../src/errors.js'

const refuses = (url: string, pattern: RegExp) =>
  assert.throws(
    () => parseDatabaseUrl(url),
    (e: unknown) =>
      e instanceof UsageError &&
      e.code === 'INVALID_DATABASE_URL' &&
      pattern.test(e.message) &&
      !e.message.includes('s3cret'),
  )

describe('parseDatabaseUrl', () => {
  it('reads password, RDS IAM, Entra, Cloud SQL, SQL Server and SQLite URLs', () => {
    assert.deepEqual(parseDatabaseUrl('postgresql://ml:s3cret@db:6543/mlflow?sslmode=require'), {
      engine: 'postgresql',
      auth: 'password',
      display: 'postgresql://ml:***@db:6543/mlflow?sslmode=require',
      user: 'ml',
      password: 's3cret',
      database: 'mlflow',
      host: 'db',
      port: 6543,
      sslmode: 'require',
      sslrootcert: undefined,
    })
    const rds = parseDatabaseUrl(
      'postgresql://mlflow_iam@mydb.abc123.eu-west-1.rds.amazonaws.com/mlflow?auth=rds-iam&sslrootcert=/etc/rds.pem',
    )
    assert.equal(rds.region, 'eu-west-1', 'the region is read from an RDS host name')
    assert.equal(
      parseDatabaseUrl('postgresql://u@MyDB.abc.US-EAST-2.rds.amazonaws.com/m?auth=rds-iam').region,
      'us-east-2',
    )
    assert.equal(rds.sslmode, 'verify-full', 'token logins default to verified TLS')
    assert.equal(rds.port, 5432)
    const entra = parseDatabaseUrl('postgresql://ml%40corp.example@srv.postgres.database.azure.com/mlflow?auth=entra')
    assert.equal(entra.user, 'ml@corp.example')
    const cloudsql = parseDatabaseUrl('postgresql://sa@/mlflow?auth=cloudsql&instance=proj:us-central1:db&ip=private')
    assert.deepEqual([cloudsql.instance, cloudsql.ipType, cloudsql.host], ['proj:us-central1:db', 'PRIVATE', undefined])
    assert.equal(parseDatabaseUrl('mssql://app@sql.database.windows.net/mlflow?auth=entra').port, 1433)
    assert.equal(parseDatabaseUrl('sqlite:////var/lib/mlflow.db').sqlitePath, '/var/lib/mlflow.db')
  })

  it('names what is wrong and never echoes a password', () => {
    refuses('not a url', /not a URL/)
    refuses('mysql://u:s3cret@h/db', /unsupported scheme/)
    refuses('postgresql://u:s3cret@h/db?auth=rds-iam&region=us-east-1', /takes no password/)
    refuses('postgresql://u@h/db?auth=rds-iam', /needs region/)
    refuses('postgresql://u@/db?auth=cloudsql&instance=nope', /PROJECT:REGION:INSTANCE/)
    refuses('mssql://u@h/db?auth=rds-iam', /not available for mssql/)
    refuses('postgresql://u:s3cret@h/', /no database name/)
    refuses('postgresql://u:s3cret@h/db?sslmode=maybe', /sslmode=maybe/)
    refuses('sqlite://relative.db', /absolute path/)
    refuses('sqlite:///relative.db', /absolute path/)
    refuses('postgresql://u:s3cret/x@h/db', /not a URL|"@"|host/)
    refuses('postgresql://u:s3cret@x@h/db', /more than one "@"/)
    refuses('postgresql://u%zz:s3cret@h/db', /stray "%"/)
    refuses('postgresql://u:s3cret@h:0/db', /port 0/)
  })
})

describe('database errors', () => {
  const rds = parseDatabaseUrl('postgresql://mlflow_iam@h:5432/mlflow?auth=rds-iam&region=us-east-1')
  it('turns an RDS "PAM authentication failed" into an auth error with the IAM checklist', () => {
    const error = classifyDatabaseError(rds, new Error('PAM authentication failed for user "mlflow_iam"'))
    assert.ok(error instanceof AuthError)
    assert.match(error.suggestionList[0], /rds_iam.*rds-db:connect/)
  })

  it('a refused password login is an auth error (exit 4) with the user, password and pg_hba.conf checklist', () => {
    const target = parseDatabaseUrl('postgresql://mlflow:wrong@db.internal:5432/mlflow')
    const error = classifyDatabaseError(target, new Error('password authentication failed for user "mlflow"'))
    assert.ok(error instanceof AuthError)
    assert.equal(error.exit, 4)
    assert.match(error.suggestionList[0], /refused user mlflow.*pg_hba\.conf/)
  })

  it('gives TLS, network and credential hints, and masks the password', () => {
    const target = parseDatabaseUrl('postgresql://u:s3cret@db.internal:5432/mlflow')
    const error = classifyDatabaseError(target, new Error('connect ECONNREFUSED 10.0.0.1:5432 (password s3cret)'))
    assert.ok(error instanceof ExternalError)
    assert.doesNotMatch(error.message, /s3cret/)
    assert.match(error.suggestionList.join(' '), /security groups/)
    assert.match(
      databaseErrorHints(rds, 'self-signed certificate in certificate chain').join(' '),
      /global-bundle\.pem/,
    )
    assert.match(
      databaseErrorHints(rds, 'CredentialsProviderError: Could not load credentials from any providers').join(' '),
      /No cloud credentials/,
    )
  })
})
