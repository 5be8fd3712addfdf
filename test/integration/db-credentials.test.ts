// The CLI's credential layer (src/adapters/db) against the token-checking PostgreSQL: RDS IAM through the
// default AWS credential chain (environment variables holding moto-issued STS credentials), and Entra ID
// through @azure/identity's own chain (AZURE_TOKEN_CREDENTIALS=AzureCliCredential, with an `az` on PATH
// that prints what `az account get-access-token` prints).
import assert from 'node:assert/strict'
import {randomUUID} from 'node:crypto'
import {chmodSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {sqlServerConfig} from '../../src/adapters/db/credentials.js'
import {probePostgres} from '../../src/adapters/db/postgres.js'
import {parseDatabaseUrl} from '../../src/core/database-url.js'
import {AuthError} from '../../src/errors.js'
import {tempDir} from '../support/cli.js'
import {
  awsIntegration,
  createTokenDatabase,
  entraIntegration,
  NO_EMULATORS,
  NO_TOKEN_AUTH,
  startMoto,
  startTokenVerifier,
  tokenAuthConfig,
} from '../support/cloud.js'
import {requireService} from '../support/services.js'

const auth = tokenAuthConfig()
const verifier = auth ? await startTokenVerifier(auth) : undefined

/** Sets env vars for one test and restores them afterwards. */
function withEnv(t: {after: (fn: () => void) => void}, values: Record<string, string | undefined>) {
  const saved = Object.fromEntries(Object.keys(values).map((key) => [key, process.env[key]]))
  const apply = (entries: Record<string, string | undefined>) => {
    for (const [key, value] of Object.entries(entries)) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
  apply(values)
  t.after(() => apply(saved))
}

describe('database credential layer (CLI side)', () => {
  it('auth=rds-iam signs a token per connection with the default AWS chain, and a wrong region fails with the IAM checklist', async (t) => {
    if (!requireService(t, Boolean(auth), NO_TOKEN_AUTH)) return
    const moto = await startMoto('unused-bucket')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const issued = JSON.parse(
      Buffer.from(
        (await awsIntegration(moto!, 600, verifier).issue({contentGuid: 'ops-box', requestedTokenType: 'aws'}))
          .access_token,
        'base64',
      ).toString(),
    )
    withEnv(t, {
      AWS_ACCESS_KEY_ID: issued.accessKeyId,
      AWS_SECRET_ACCESS_KEY: issued.secretAccessKey,
      AWS_SESSION_TOKEN: issued.sessionToken,
      AWS_PROFILE: undefined,
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    })
    const database = `mlflow_cli_rds_${randomUUID().slice(0, 8)}`
    await createTokenDatabase(database, auth!.iamUser)
    const url = `postgresql://${auth!.iamUser}@${auth!.host}:${auth!.port}/${database}?auth=rds-iam&region=${auth!.region}&sslrootcert=${auth!.caFile}`
    const first = verifier!.decisions.length
    for (let i = 0; i < 2; i++) {
      const probe = await probePostgres(parseDatabaseUrl(url))
      assert.deepEqual([probe.user, probe.alembicRevision], [auth!.iamUser, null])
    }
    assert.deepEqual(
      verifier!.decisions.slice(first).map((d) => d.accepted),
      [true, true],
      'one fresh token per connection',
    )

    const wrongRegion = url.replace(`region=${auth!.region}`, 'region=eu-north-1')
    await assert.rejects(probePostgres(parseDatabaseUrl(wrongRegion)), (error: unknown) => {
      assert.ok(error instanceof AuthError, String(error))
      assert.equal(error.code, 'DATABASE_AUTH_FAILED')
      assert.ok(!error.message.includes(issued.sessionToken), 'no token in the message')
      return true
    })
    assert.equal(verifier!.decisions.at(-1)!.reason, 'credential scope is not rds-db in this region')
  })

  it('auth=entra gets a token from @azure/identity (Azure CLI credential) for PostgreSQL and for SQL Server', async (t) => {
    if (!requireService(t, Boolean(auth), NO_TOKEN_AUTH)) return
    const integration = entraIntegration(auth!.entraUser, 3600, verifier)
    const bin = tempDir('fake-az-')
    const answers = join(bin, 'answers.json')
    // What `az account get-access-token --resource R` prints (Azure CLI >= 2.54 adds expires_on).
    const mint = async (scope: string) => {
      const {access_token: token, expires_in: lifetime} = await integration.issue({
        contentGuid: 'ops-box',
        requestedTokenType: 'access_token',
        scope,
      })
      return {
        accessToken: token,
        expiresOn: new Date(Date.now() + lifetime! * 1000).toISOString(),
        expires_on: Math.floor(Date.now() / 1000) + lifetime!,
        tokenType: 'Bearer',
      }
    }
    writeFileSync(
      answers,
      JSON.stringify({
        postgres: await mint('https://ossrdbms-aad.database.windows.net/.default'),
        sql: await mint('https://database.windows.net/.default'),
      }),
    )
    writeFileSync(
      join(bin, 'az'),
      `#!/bin/sh\ncase "$*" in *ossrdbms*) key=postgres ;; *) key=sql ;; esac\nnode -e "process.stdout.write(JSON.stringify(require('${answers}')[process.argv[1]]))" "$key"\n`,
    )
    chmodSync(join(bin, 'az'), 0o755)
    withEnv(t, {PATH: `${bin}:${process.env.PATH}`, AZURE_TOKEN_CREDENTIALS: 'AzureCliCredential'})

    const database = `mlflow_cli_entra_${randomUUID().slice(0, 8)}`
    await createTokenDatabase(database, auth!.entraUser)
    const user = encodeURIComponent(auth!.entraUser)
    const probe = await probePostgres(
      parseDatabaseUrl(
        `postgresql://${user}@${auth!.host}:${auth!.port}/${database}?auth=entra&sslrootcert=${auth!.caFile}`,
      ),
    )
    assert.equal(probe.user, auth!.entraUser)
    assert.equal(verifier!.decisions.at(-1)!.accepted, true)

    // SQL Server: no server can run here, so the contract is the tedious config: token-credential
    // authentication whose credential yields the database-scoped token.
    const config = (await sqlServerConfig(
      parseDatabaseUrl('mssql://mlflow-app@sql.example.net/mlflow?auth=entra'),
    )) as {
      authentication: {type: string; options: {credential: {getToken(scope: string): Promise<{token: string}>}}}
      options: {encrypt: boolean}
    }
    assert.equal(config.authentication.type, 'token-credential')
    assert.equal(config.options.encrypt, true)
    const token = await config.authentication.options.credential.getToken('https://database.windows.net/.default')
    assert.equal(
      JSON.parse(Buffer.from(token.token.split('.')[1], 'base64url').toString()).aud,
      'https://database.windows.net',
    )
  })
})
