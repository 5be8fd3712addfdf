// doctor's artifact-store check against real emulators: moto S3 (IAM enforced), Azurite, gcp-storage-emulator.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {BlobServiceClient} from '@azure/storage-blob'

import {runCli, type CliResult} from '../support/cli.js'
import {NO_EMULATORS, startGcsEmulator, startMoto} from '../support/cloud.js'
import {AZURITE_ACCOUNT, NO_AZURITE, azuriteBlobUrl, requireService} from '../support/services.js'

const storeCheck = async (url: string, env: Record<string, string>, deep = false) => {
  const result = await runCli(
    ['doctor', '--only', 'database.artifacts', '--artifacts', url, ...(deep ? ['--deep'] : []), '--json'],
    {env},
  )
  return {
    result,
    check: (result.json!.result.checks as Array<{id: string; status: string; detail: string; fix?: string}>).find(
      (c) => c.id === 'database.artifacts',
    )!,
  }
}
const expectStatus = (
  outcome: {result: CliResult; check: {status: string; detail: string}},
  status: string,
  code: number,
) => {
  assert.equal(outcome.check.status, status, outcome.check.detail)
  assert.equal(outcome.result.code, code)
}

describe('doctor --artifacts', () => {
  it('S3 (moto): the bucket exists, its region matches, and --deep writes, reads and deletes a probe', async (t) => {
    const moto = await startMoto('mlflow-artifacts')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const creds = await moto!.assumeRole()
    const env = {
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
      AWS_REGION: 'us-east-1',
      MLFLOW_S3_ENDPOINT_URL: moto!.url,
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    }
    expectStatus(await storeCheck('s3://mlflow-artifacts/mlflow', env, true), 'pass', 0)
    const missing = await storeCheck('s3://no-such-bucket/mlflow', env)
    expectStatus(missing, 'fail', 6)
    assert.match(missing.check.fix!, /Create it/)
    const region = await storeCheck('s3://mlflow-artifacts/mlflow', {...env, AWS_REGION: 'eu-west-1'})
    expectStatus(region, 'warn', 0)
    assert.match(region.check.detail, /bucket is in us-east-1, but AWS_REGION is eu-west-1/)
    const denied = await storeCheck('s3://mlflow-artifacts/mlflow', {...env, AWS_SECRET_ACCESS_KEY: 'wrong-secret'})
    expectStatus(denied, 'fail', 6)
  })

  it('Azure Blob (Azurite): the container exists, --deep probe, a missing container fails', async (t) => {
    const blob = azuriteBlobUrl()
    if (!requireService(t, Boolean(blob), NO_AZURITE)) return
    const connection = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=${blob};`
    await BlobServiceClient.fromConnectionString(connection).getContainerClient('doctor').createIfNotExists()
    const env = {AZURE_STORAGE_CONNECTION_STRING: connection}
    expectStatus(
      await storeCheck(`wasbs://doctor@${AZURITE_ACCOUNT.name}.blob.core.windows.net/mlflow`, env, true),
      'pass',
      0,
    )
    expectStatus(
      await storeCheck(`wasbs://absent@${AZURITE_ACCOUNT.name}.blob.core.windows.net/mlflow`, env),
      'fail',
      6,
    )
  })

  it('GCS (gcp-storage-emulator): the bucket exists, --deep probe, a missing bucket fails', async (t) => {
    const emulator = await startGcsEmulator('mlflow-artifacts')
    if (!requireService(t, Boolean(emulator), NO_EMULATORS)) return
    const env = {STORAGE_EMULATOR_HOST: emulator!}
    expectStatus(await storeCheck('gs://mlflow-artifacts/mlflow', env, true), 'pass', 0)
    expectStatus(await storeCheck('gs://no-such-bucket/mlflow', env), 'fail', 6)
  })
})
