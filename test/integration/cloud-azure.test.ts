// Storage mode azure, end to end: the fake Connect issues Entra-style access tokens per scope that expire
// within seconds; the extension logs in to a real PostgreSQL that checks each token (as Azure Database for
// PostgreSQL would) and writes artifacts to Azurite over HTTPS, which checks each Bearer token's
// audience, issuer and lifetime.
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'
import {
  createTokenDatabase,
  entraIntegration,
  NO_TOKEN_AUTH,
  startAzuriteHttps,
  startTokenVerifier,
  tokenAuthConfig,
} from '../support/cloud.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {connectAuthEnv, logRun, readRun} from '../support/mlflow-client.js'
import {AZURITE_ACCOUNT, NO_VENVS, cloudVenv, requireService, testVenvs} from '../support/services.js'

// Tokens live 15 s: the extension renews a third of a lifetime before expiry (5 s), so the loop below crosses two
// renewals; in the last tenth of a lifetime (1.5 s) callers wait for the renewal instead of logging in with a token
// that could expire on the way.
const LIFETIME_SECONDS = 15
const CONTAINER = 'mlflow'
const INTEGRATION = randomUUID()
const auth = tokenAuthConfig()
const verifier = auth ? await startTokenVerifier(auth) : undefined

function blobAdmin(python: string, url: string, certFile: string, action: 'create' | 'list'): string[] {
  const script = `
import json, sys
from azure.storage.blob import BlobServiceClient
client = BlobServiceClient(sys.argv[1], credential={"account_name": sys.argv[2], "account_key": sys.argv[3]}, connection_verify=sys.argv[4]).get_container_client("${CONTAINER}")
if sys.argv[5] == "create":
    client.create_container()
    print("[]")
else:
    print(json.dumps([b.name for b in client.list_blobs()]))
`
  return JSON.parse(
    execFileSync(python, ['-c', script, url, AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key, certFile, action], {
      encoding: 'utf8',
    }).trim(),
  )
}

describe('storage mode azure (Entra ID + PostgreSQL + Blob) against the fake Connect', () => {
  it('logs in with a fresh Entra token per connection, renews tokens before expiry under load, and stores artifacts in Blob with a token', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    // The azure bundle's venv, used here as a storage admin tool with the account key.
    const python = cloudVenv('azure')?.python
    if (!requireService(t, Boolean(auth), NO_TOKEN_AUTH) || !requireService(t, Boolean(venv && python), NO_VENVS))
      return
    const azurite = await startAzuriteHttps()
    blobAdmin(python!, azurite.url, azurite.certFile, 'create')
    const integration = entraIntegration(auth!.entraUser, LIFETIME_SECONDS, verifier)
    const fake = await startFakeConnect({integrations: {[INTEGRATION]: integration}})
    const database = `mlflow_azure_${randomUUID().slice(0, 8)}`
    await createTokenDatabase(database, auth!.entraUser)

    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--storage', 'azure', '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const cliEnv = {
      CONNECT_SERVER: fake.url,
      CONNECT_API_KEY: PUBLISHER_KEY,
      MLFLOWCTL_CONFIG_DIR: tempDir('azure-config-'),
    }
    const contentEnv = [
      `AZURE_DATABASE_SERVER=${auth!.host}`,
      `AZURE_DATABASE_PORT=${auth!.port}`,
      `AZURE_DATABASE_NAME=${database}`,
      `AZURE_DATABASE_USERNAME=${auth!.entraUser}`,
      'AZURE_DATABASE_TYPE=postgresql',
      'AZURE_REGION=westeurope',
      `AZURE_DATABASE_CA_BUNDLE=${auth!.caFile}`,
      `MLFLOW_ARTIFACTS_DESTINATION=wasbs://${CONTAINER}@${AZURITE_ACCOUNT.name}.blob.core.windows.net/mlflow`,
      `MLFLOWCTL_AZURE_BLOB_ENDPOINT=${azurite.url}`,
      // Azurite's certificate is self-signed; an internal CA would be configured the same way.
      `REQUESTS_CA_BUNDLE=${azurite.certFile}`,
      'MLFLOW_SQLALCHEMYSTORE_POOLCLASS=NullPool',
    ].flatMap((pair) => ['-E', pair])
    const deployed = await runCli(
      ['deploy', dir, '--new', '--name', 'mlflow-azure', '--oauth-integration', INTEGRATION, ...contentEnv, '--json'],
      {env: cliEnv},
    )
    assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}`)
    const {guid, contentUrl} = deployed.json!.result

    const client = {
      python: venv!.python,
      trackingUri: contentUrl.replace(/\/$/, ''),
      token: '',
      env: {...connectAuthEnv(venv!.python, PUBLISHER_KEY), MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD: 'false'},
    }
    const first = await logRun(client, 'azure-artifacts')
    assert.equal((await readRun(client, first.runId)).artifact, 'weights-v1')

    const headers = {Authorization: `Key ${PUBLISHER_KEY}`}
    const firstDecision = verifier!.decisions.length
    const issuedBefore = integration.issued.length
    const until = Date.now() + LIFETIME_SECONDS * 2.5 * 1000
    const statuses: number[] = []
    const refusals: string[] = []
    await Promise.all(
      Array.from({length: 4}, async () => {
        while (Date.now() < until) {
          const response = await fetch(`${contentUrl}api/2.0/mlflow/runs/get?run_id=${first.runId}`, {headers})
          statuses.push(response.status)
          const body = await response.text()
          if (response.status !== 200)
            refusals.push(`${new Date().toISOString()} ${response.status} ${body.slice(0, 2000)}`)
        }
      }),
    )
    assert.ok(statuses.length > 20, `too few requests: ${statuses.length}`)
    if (refusals.length) {
      // What the extension logged meanwhile (the deploy task keeps collecting the process's output).
      const logged = [...fake.tasks.values()].flatMap((task) => task.output)
      t.diagnostic(`extension log, last 80 lines:\n${logged.slice(-80).join('\n')}`)
    }
    assert.deepEqual(refusals, [], 'a request failed across a token expiry')
    const logins = verifier!.decisions.slice(firstDecision)
    assert.deepEqual(
      logins.filter((d) => !d.accepted),
      [],
      'the database refused a token from the extension',
    )
    assert.ok(logins.length >= statuses.length, `${logins.length} logins for ${statuses.length} requests`)
    const dbTokens = integration.issued
      .slice(issuedBefore)
      .filter((token) => token.aud === 'https://ossrdbms-aad.database.windows.net')
    assert.ok(dbTokens.length >= 3, `the database token was renewed ${dbTokens.length} times under load`)
    for (let i = 1; i < dbTokens.length; i++)
      assert.ok(
        dbTokens[i].exp - LIFETIME_SECONDS < dbTokens[i - 1].exp,
        `renewal ${i} came after the previous token expired`,
      )

    // By now the first Blob token has expired, and Azurite refuses expired tokens: this upload needs a renewed one.
    const second = await logRun(client, 'azure-artifacts')
    const blobs = blobAdmin(python!, azurite.url, azurite.certFile, 'list')
    for (const {runId} of [first, second])
      assert.ok(
        blobs.some((name) => name.startsWith('mlflow/') && name.endsWith(`${runId}/artifacts/model.txt`)),
        `artifact of ${runId} not in Blob: ${blobs.join(', ')}`,
      )
    const storageTokens = integration.issued.filter((token) => token.aud === 'https://storage.azure.com')
    assert.ok(storageTokens.length >= 2, 'the storage token was renewed')
    assert.ok(fake.exchanges.get(guid)! >= dbTokens.length + storageTokens.length - 1)
  })
})
