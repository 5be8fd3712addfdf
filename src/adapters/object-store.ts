// One small interface over S3, Azure Blob and GCS, configured the way MLflow configures itself
// (MLFLOW_S3_ENDPOINT_URL, AZURE_STORAGE_CONNECTION_STRING, STORAGE_EMULATOR_HOST) so that the CLI sees
// what the server sees. Credentials: each SDK's default chain.
import type {ArtifactLocation} from '../core/artifact-url.js'

export interface BucketInfo {
  exists: boolean
  /** S3: the bucket's region; GCS: its location; Azure: unknown from the data plane. */
  region?: string
}

export interface ObjectStore {
  describe(): Promise<BucketInfo>
  put(key: string, body: Buffer): Promise<void>
  get(key: string): Promise<Buffer>
  delete(key: string): Promise<void>
}

export async function openObjectStore(location: ArtifactLocation, env: NodeJS.ProcessEnv = process.env): Promise<ObjectStore> {
  if (location.scheme === 's3') return s3Store(location, env)
  if (location.scheme === 'wasbs') return blobStore(location, env)
  return gcsStore(location, env)
}

async function s3Store(location: ArtifactLocation, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const s3 = await import('@aws-sdk/client-s3')
  const endpoint = env.MLFLOW_S3_ENDPOINT_URL || undefined
  const client = new s3.S3Client({region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1', endpoint, forcePathStyle: Boolean(endpoint)})
  const Bucket = location.bucket
  return {
    async describe() {
      try {
        await client.send(new s3.HeadBucketCommand({Bucket}))
      } catch (error) {
        if ((error as {$metadata?: {httpStatusCode?: number}}).$metadata?.httpStatusCode === 404) return {exists: false}
        throw error
      }
      const {LocationConstraint} = await client.send(new s3.GetBucketLocationCommand({Bucket}))
      return {exists: true, region: LocationConstraint || 'us-east-1'} // null means us-east-1
    },
    async put(Key, Body) {
      await client.send(new s3.PutObjectCommand({Bucket, Key, Body}))
    },
    async get(Key) {
      const answer = await client.send(new s3.GetObjectCommand({Bucket, Key}))
      return Buffer.from(await answer.Body!.transformToByteArray())
    },
    async delete(Key) {
      await client.send(new s3.DeleteObjectCommand({Bucket, Key}))
    },
  }
}

async function blobStore(location: ArtifactLocation, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const {BlobServiceClient} = await import('@azure/storage-blob')
  const service = env.AZURE_STORAGE_CONNECTION_STRING
    ? BlobServiceClient.fromConnectionString(env.AZURE_STORAGE_CONNECTION_STRING)
    : new BlobServiceClient(`https://${location.account}.${location.suffix}`, new (await import('@azure/identity')).DefaultAzureCredential())
  const container = service.getContainerClient(location.bucket)
  return {
    async describe() {
      return {exists: await container.exists()}
    },
    async put(key, body) {
      await container.getBlockBlobClient(key).upload(body, body.length)
    },
    async get(key) {
      return container.getBlobClient(key).downloadToBuffer()
    },
    async delete(key) {
      await container.getBlobClient(key).delete()
    },
  }
}

async function gcsStore(location: ArtifactLocation, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const {Storage} = await import('@google-cloud/storage')
  // apiEndpoint, not STORAGE_EMULATOR_HOST: the Node client mixes paths with the latter (cloud-auth.md §4.3).
  const emulator = env.STORAGE_EMULATOR_HOST
  const storage = new Storage(emulator ? {apiEndpoint: emulator.replace(/\/$/, ''), projectId: env.GOOGLE_CLOUD_PROJECT || 'emulator'} : {projectId: env.GOOGLE_CLOUD_PROJECT})
  const bucket = storage.bucket(location.bucket)
  return {
    async describe() {
      const [exists] = await bucket.exists()
      if (!exists) return {exists}
      const [metadata] = await bucket.getMetadata()
      return {exists, region: typeof metadata.location === 'string' ? metadata.location.toLowerCase() : undefined}
    },
    async put(key, body) {
      await bucket.file(key).save(body, {resumable: false})
    },
    async get(key) {
      return (await bucket.file(key).download())[0]
    },
    async delete(key) {
      await bucket.file(key).delete()
    },
  }
}
