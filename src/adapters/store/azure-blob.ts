// wasbs://container@account.blob.core.windows.net/prefix: Azure Blob Storage; AZURE_STORAGE_CONNECTION_STRING as MLflow
// reads it, else DefaultAzureCredential.
import {parseArtifactUrl} from '../../core/artifact-url.js'
import {httpStatus, rootedAt, type StoreOpener} from './store.js'

export const openBlobStore: StoreOpener = async (url, env) => {
  const location = parseArtifactUrl(url)
  const {BlobServiceClient} = await import('@azure/storage-blob')
  const service = env.AZURE_STORAGE_CONNECTION_STRING
    ? BlobServiceClient.fromConnectionString(env.AZURE_STORAGE_CONNECTION_STRING)
    : new BlobServiceClient(
        `https://${location.account}.${location.suffix}`,
        new (await import('@azure/identity')).DefaultAzureCredential(),
      )
  const container = service.getContainerClient(location.bucket)
  return rootedAt(location.prefix, location.display, {
    async describe() {
      return {exists: await container.exists()}
    },
    async put(key, body) {
      await container.getBlockBlobClient(key).upload(body, body.length)
    },
    async putIfAbsent(key, body) {
      try {
        await container.getBlockBlobClient(key).upload(body, body.length, {conditions: {ifNoneMatch: '*'}})
        return true
      } catch (error) {
        if (httpStatus(error) === 409 || httpStatus(error) === 412) return false
        throw error
      }
    },
    async get(key) {
      return container.getBlobClient(key).downloadToBuffer()
    },
    async delete(key) {
      await container.getBlobClient(key).delete()
    },
    async uploadFile(key, file) {
      await container.getBlockBlobClient(key).uploadFile(file, {blockSize: 8 * 1024 * 1024, concurrency: 2})
    },
    async downloadFile(key, file) {
      await container.getBlobClient(key).downloadToFile(file)
    },
    async *list(prefix) {
      for await (const blob of container.listBlobsFlat({prefix}))
        yield {key: blob.name, size: blob.properties.contentLength ?? 0, version: blob.properties.etag}
    },
  })
}
