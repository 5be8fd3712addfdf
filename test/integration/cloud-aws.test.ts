// Storage mode aws, end to end: the fake Connect issues AWS credentials (really minted by moto's STS,
// with IAM enforcement) that it says expire within seconds; the extension signs RDS IAM tokens with them
// for a real PostgreSQL that checks each token (test/support/token-verifier.ts), and stores artifacts in moto's S3.
import assert from 'node:assert/strict'
import {randomUUID} from 'node:crypto'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {Signer} from '@aws-sdk/rds-signer'
import pg from 'pg'
import {readFileSync} from 'node:fs'

import {opsStatusSchema} from '../../src/core/extension-contract.js'
import {runCli, tempDir} from '../support/cli.js'
import {
  awsIntegration,
  createTokenDatabase,
  NO_EMULATORS,
  NO_TOKEN_AUTH,
  startMoto,
  startTokenVerifier,
  tokenAuthConfig,
} from '../support/cloud.js'
import type {TokenVerifier} from '../support/token-verifier.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {connectAuthEnv, deleteThrough, logRun, readRun} from '../support/mlflow-client.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const LIFETIME_SECONDS = 12
const BUCKET = 'mlflow-artifacts'
const INTEGRATION = randomUUID()
const auth = tokenAuthConfig()
const verifier: TokenVerifier | undefined = auth ? await startTokenVerifier(auth) : undefined

describe('storage mode aws (RDS IAM + S3) against the fake Connect', () => {
  it('signs a fresh, valid token for every connection, renews credentials before expiry under load, and stores artifacts in S3', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(auth), NO_TOKEN_AUTH) || !requireService(t, Boolean(venv), NO_VENVS)) return
    const moto = await startMoto(BUCKET)
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const integration = awsIntegration(moto!, LIFETIME_SECONDS, verifier)
    const fake = await startFakeConnect({integrations: {[INTEGRATION]: integration}, sessionTokenFile: true})
    const database = `mlflow_aws_${randomUUID().slice(0, 8)}`
    await createTokenDatabase(database, auth!.iamUser)

    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--storage', 'aws', '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const cliEnv = {
      CONNECT_SERVER: fake.url,
      CONNECT_API_KEY: PUBLISHER_KEY,
      MLFLOWCTL_CONFIG_DIR: tempDir('aws-config-'),
    }
    const contentEnv = [
      `RDS_ENDPOINT=${auth!.host}`,
      `RDS_PORT=${auth!.port}`,
      `RDS_DATABASE=${database}`,
      `RDS_USERNAME=${auth!.iamUser}`,
      `AWS_REGION=${auth!.region}`,
      `MLFLOW_ARTIFACTS_DESTINATION=s3://${BUCKET}/mlflow`,
      `MLFLOW_S3_ENDPOINT_URL=${moto!.url}`,
      `RDS_CA_BUNDLE=${auth!.caFile}`,
      // Every request opens a new DB connection, so every request needs a freshly signed, valid token.
      'MLFLOW_SQLALCHEMYSTORE_POOLCLASS=NullPool',
    ].flatMap((pair) => ['-E', pair])

    // Without an associated integration the extension refuses to start, and its draft says why.
    const refused = await runCli(['deploy', dir, '--new', '--name', 'mlflow-aws-noauth', ...contentEnv, '--json'], {
      env: cliEnv,
    })
    assert.equal(refused.code, 6, refused.stdout)
    assert.equal(refused.json!.error!.code, 'DEPLOY_VERIFY_FAILED')
    assert.match(
      refused.json!.error!.message,
      /No OAuth integration is associated with this content \(Connect error 212/,
    )

    const deployed = await runCli(
      ['deploy', dir, '--new', '--name', 'mlflow-aws', '--oauth-integration', INTEGRATION, ...contentEnv, '--json'],
      {env: cliEnv},
    )
    assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}`)
    const {guid, contentUrl} = deployed.json!.result

    const client = {
      python: venv!.python,
      trackingUri: contentUrl.replace(/\/$/, ''),
      token: '',
      env: connectAuthEnv(venv!.python, PUBLISHER_KEY),
    }
    const {runId} = await logRun(client, 'aws-artifacts')
    const keys = await moto!.listObjects(BUCKET)
    assert.ok(
      keys.some((key) => key.startsWith('mlflow/') && key.endsWith(`${runId}/artifacts/model.txt`)),
      `artifact not in S3: ${keys.join(', ')}`,
    )
    // MLflow 3.x clients fetch S3 artifacts through presigned URLs straight from the store; moto cannot
    // check presigned URLs while it enforces IAM (KeyError HTTP_AUTHORIZATION), so this read is proxied.
    const proxied = {...client, env: {...client.env, MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD: 'false'}}
    assert.equal((await readRun(proxied, runId)).artifact, 'weights-v1')

    // Load across several expiry boundaries: 4 concurrent clients, each request a new DB connection.
    const headers = {Authorization: `Key ${PUBLISHER_KEY}`}
    const firstIssue = integration.issued.length
    const firstDecision = verifier!.decisions.length
    const until = Date.now() + LIFETIME_SECONDS * 2.5 * 1000
    const statuses: number[] = []
    await Promise.all(
      Array.from({length: 4}, async () => {
        while (Date.now() < until) {
          const response = await fetch(`${contentUrl}api/2.0/mlflow/runs/get?run_id=${runId}`, {headers})
          statuses.push(response.status)
          await response.arrayBuffer()
        }
      }),
    )
    assert.ok(statuses.length > 20, `too few requests to cross an expiry boundary: ${statuses.length}`)
    assert.deepEqual([...new Set(statuses)], [200], 'a request failed across a credential expiry')
    const logins = verifier!.decisions.slice(firstDecision)
    assert.deepEqual(
      logins.filter((d) => !d.accepted),
      [],
      'the database refused a token from the extension',
    )
    assert.ok(
      logins.length >= statuses.length,
      `each request must open a connection with a new token: ${logins.length} logins for ${statuses.length} requests`,
    )
    // Credentials are renewed on use, so an idle process may let them lapse and renew on the next request;
    // under continuous load every renewal must come before the credentials in use expire.
    const duringLoad = integration.issued.slice(firstIssue)
    assert.ok(
      duringLoad.length >= 3,
      `credentials were renewed ${duringLoad.length} times in ${LIFETIME_SECONDS * 2.5} s of load`,
    )
    for (let i = 1; i < duringLoad.length; i++) {
      assert.ok(
        duringLoad[i].issuedAt < duringLoad[i - 1].expiresAt,
        `renewal ${i} under load came after the previous credentials expired`,
      )
    }
    assert.ok(fake.exchanges.get(guid)! >= duringLoad.length)

    // The ops status tells when the credentials expire, never what they are.
    const opsTokens = JSON.parse(readFileSync(join(cliEnv.MLFLOWCTL_CONFIG_DIR, 'ops-tokens.json'), 'utf8')) as Record<
      string,
      string
    >
    const opsToken = Object.entries(opsTokens).find(([key]) => key.endsWith(`|${guid}`))![1]
    const status = await (
      await fetch(`${contentUrl}_mlflowctl/status`, {headers: {...headers, 'X-Mlflowctl-Ops-Token': opsToken}})
    ).text()
    const parsed = JSON.parse(status)
    // The contract: the real extension's status (cloud fields included) has exactly the fields the CLI reads.
    opsStatusSchema.strict().parse(parsed)
    assert.equal(parsed.storageMode, 'aws')
    assert.equal(parsed.credentialsSource, 'connect')
    assert.match(parsed.credentials[0].expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    for (const issued of integration.issued)
      assert.ok(!status.includes(issued.accessKeyId), 'the ops status leaked a key id')

    // storage report and gc in this mode: the extension reads PostgreSQL with IAM tokens and S3 with the
    // Connect-issued credentials, purges the deleted run's rows, then its objects.
    await deleteThrough(client, [runId])
    const storageJson = async (args: string[]) => {
      const result = await runCli([...args, '--json'], {env: cliEnv, timeoutMs: 300_000})
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`)
      return result.json!.result
    }
    const before = await storageJson(['storage', 'report', '--guid', guid])
    assert.equal(before.database.dialect, 'postgresql')
    assert.equal(before.deleted.runs.count, 1)
    assert.ok(before.deleted.runs.bytes > 0 && before.artifacts.destination.startsWith('s3://'))
    const purged = await storageJson(['gc', '--guid', guid, '--older-than', '0s', '--yes', '--no-backup'])
    assert.equal(purged.result.deleted.runs.count, 1)
    assert.ok(!(await moto!.listObjects(BUCKET)).some((key) => key.includes(runId)), "the run's objects are gone")
    const after = await storageJson(['storage', 'report', '--guid', guid])
    assert.deepEqual([after.deleted.runs.count, after.gc.last.ok], [0, true])
  })

  it('PostgreSQL (checking tokens as RDS does) refuses plain passwords, logins without TLS, and tokens with a wrong secret, for another user, or signed with expired credentials', async (t) => {
    if (!requireService(t, Boolean(auth), NO_TOKEN_AUTH)) return
    const moto = await startMoto(BUCKET)
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const integration = awsIntegration(moto!, 2, verifier)
    const issued = JSON.parse(
      Buffer.from(
        (await integration.issue({contentGuid: 'x', requestedTokenType: 'aws'})).access_token,
        'base64',
      ).toString(),
    )
    const connectWith = async (
      credentials: {accessKeyId: string; secretAccessKey: string; sessionToken: string},
      user = auth!.iamUser,
    ) => {
      const signer = new Signer({
        hostname: auth!.host,
        port: auth!.port,
        username: auth!.iamUser,
        region: auth!.region,
        credentials,
      })
      const client = new pg.Client({
        host: auth!.host,
        port: auth!.port,
        user,
        database: 'postgres',
        password: () => signer.getAuthToken(),
        ssl: {ca: readFileSync(auth!.caFile, 'utf8')},
      })
      try {
        await client.connect()
        await client.end()
        return 'ok'
      } catch (error) {
        return (error as Error).message
      }
    }
    assert.equal(await connectWith(issued), 'ok', 'the JS signer (CLI side) with valid credentials')
    const unsigned = new pg.Client({
      host: auth!.host,
      port: auth!.port,
      user: auth!.iamUser,
      database: 'postgres',
      password: 'a-plain-password',
      ssl: {ca: readFileSync(auth!.caFile, 'utf8')},
    })
    await assert.rejects(unsigned.connect(), /LDAP authentication failed/, 'a plain password is not a token')
    const plaintext = new pg.Client({
      host: auth!.host,
      port: auth!.port,
      user: auth!.iamUser,
      database: 'postgres',
      password: 'x',
      ssl: false,
    })
    await assert.rejects(plaintext.connect(), /no encryption|pg_hba\.conf rejects/, 'token roles need TLS, as on RDS')
    assert.match(await connectWith({...issued, secretAccessKey: 'wrong-secret'}), /LDAP authentication failed/)
    assert.match(
      await connectWith(issued, auth!.entraUser),
      /LDAP authentication failed/,
      'a token for one user must not log in another',
    )
    await new Promise((resolve) => setTimeout(resolve, 3000))
    assert.match(
      await connectWith(issued),
      /LDAP authentication failed/,
      'credentials past their expiration must not sign valid tokens',
    )
  })
})
