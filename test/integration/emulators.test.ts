import assert from 'node:assert/strict'
import {randomUUID} from 'node:crypto'
import {describe, it} from 'node:test'

import {BlobServiceClient, StorageSharedKeyCredential} from '@azure/storage-blob'
import pg from 'pg'

import {AZURITE_ACCOUNT, azuriteBlobUrl, NO_AZURITE, NO_PG, pgBaseUrl, requireService} from '../support/services.js'

// The services the later suites (artifact stores, backup) build on: prove the harness really provides them.
describe('test services', () => {
  it('Azurite serves a blob round trip with the Azure SDK', async (t) => {
    if (!requireService(t, Boolean(azuriteBlobUrl()), NO_AZURITE)) return
    const service = new BlobServiceClient(
      azuriteBlobUrl()!,
      new StorageSharedKeyCredential(AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key),
    )
    const container = service.getContainerClient(`c${randomUUID().slice(0, 8)}`)
    await container.create()
    const blob = container.getBlockBlobClient('runs/1/artifacts/model.txt')
    await blob.upload('weights', 7)
    assert.equal((await blob.downloadToBuffer()).toString(), 'weights')
    const names: string[] = []
    for await (const item of container.listBlobsFlat({prefix: 'runs/'})) names.push(item.name)
    assert.deepEqual(names, ['runs/1/artifacts/model.txt'])
    await container.delete()
  })

  it('PostgreSQL accepts the test role on 127.0.0.1 and can create databases', async (t) => {
    if (!requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const client = new pg.Client({connectionString: pgBaseUrl()})
    await client.connect()
    try {
      const {rows} = await client.query(
        'SELECT current_setting($1) AS version, rolcreatedb OR rolsuper AS can_create FROM pg_roles WHERE rolname = current_user',
        ['server_version'],
      )
      assert.match(rows[0].version, /^\d+/)
      assert.equal(rows[0].can_create, true)
    } finally {
      await client.end()
    }
  })
})
