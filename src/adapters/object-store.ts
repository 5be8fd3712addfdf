// One small interface over S3, Azure Blob and GCS, configured the way MLflow configures itself
// (MLFLOW_S3_ENDPOINT_URL, AZURE_STORAGE_CONNECTION_STRING, STORAGE_EMULATOR_HOST) so that the CLI sees
// what the server sees. Credentials: each SDK's default chain.
import {createReadStream, createWriteStream} from 'node:fs'
import {pipeline} from 'node:stream/promises'

import type {ArtifactLocation} from '../core/artifact-url.js'

export interface BucketInfo {
  exists: boolean
  /** S3: the bucket's region; GCS: its location; Azure: unknown from the data plane. */
  region?: string
}

export interface ObjectStore {
  describe(): Promise<BucketInfo>
  put(key: string, body: Buffer): Promise<void>
  /** Creates the object only if no object has that key (the store checks, atomically). False if one exists. */
  putIfAbsent(key: string, body: Buffer): Promise<boolean>
  get(key: string): Promise<Buffer>
  delete(key: string): Promise<void>
  /** Streams a local file up (multipart where the store needs it): memory stays flat. */
  uploadFile(key: string, file: string): Promise<void>
  downloadFile(key: string, file: string): Promise<void>
  /** Every object under the prefix, with its size. */
  list(prefix: string): Promise<Array<{key: string; size: number}>>
}

const status = (error: unknown) =>
  (error as {$metadata?: {httpStatusCode?: number}; statusCode?: number; code?: number}).$metadata?.httpStatusCode ??
  (error as {statusCode?: number}).statusCode ??
  (error as {code?: number}).code

export async function openObjectStore(
  location: ArtifactLocation,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ObjectStore> {
  if (location.scheme === 's3') return s3Store(location, env)
  if (location.scheme === 'wasbs') return blobStore(location, env)
  return gcsStore(location, env)
}

async function s3Store(location: ArtifactLocation, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const s3 = await import('@aws-sdk/client-s3')
  const endpoint = env.MLFLOW_S3_ENDPOINT_URL || undefined
  // Keys in the given environment win (the caller's view); otherwise the SDK's default chain.
  const credentials =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? {
          accessKeyId: env.AWS_ACCESS_KEY_ID,
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
          sessionToken: env.AWS_SESSION_TOKEN || undefined,
        }
      : undefined
  const client = new s3.S3Client({
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    endpoint,
    forcePathStyle: Boolean(endpoint),
    credentials,
  })
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
    async putIfAbsent(Key, Body) {
      try {
        await client.send(new s3.PutObjectCommand({Bucket, Key, Body, IfNoneMatch: '*'}))
        return true
      } catch (error) {
        if (status(error) === 412) return false
        throw error
      }
    },
    async get(Key) {
      const answer = await client.send(new s3.GetObjectCommand({Bucket, Key}))
      return Buffer.from(await answer.Body!.transformToByteArray())
    },
    async delete(Key) {
      await client.send(new s3.DeleteObjectCommand({Bucket, Key}))
    },
    async uploadFile(Key, file) {
      const {Upload} = await import('@aws-sdk/lib-storage')
      await new Upload({
        client,
        params: {Bucket, Key, Body: createReadStream(file)},
        queueSize: 2,
        partSize: 16 * 1024 * 1024,
      }).done()
    },
    async downloadFile(Key, file) {
      const answer = await client.send(new s3.GetObjectCommand({Bucket, Key}))
      await pipeline(answer.Body as NodeJS.ReadableStream, createWriteStream(file, {mode: 0o600}))
    },
    async list(Prefix) {
      const found: Array<{key: string; size: number}> = []
      let ContinuationToken: string | undefined
      do {
        const page = await client.send(new s3.ListObjectsV2Command({Bucket, Prefix, ContinuationToken}))
        for (const item of page.Contents ?? []) found.push({key: item.Key!, size: item.Size ?? 0})
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
      } while (ContinuationToken)
      return found
    },
  }
}

async function blobStore(location: ArtifactLocation, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const {BlobServiceClient} = await import('@azure/storage-blob')
  const service = env.AZURE_STORAGE_CONNECTION_STRING
    ? BlobServiceClient.fromConnectionString(env.AZURE_STORAGE_CONNECTION_STRING)
    : new BlobServiceClient(
        `https://${location.account}.${location.suffix}`,
        new (await import('@azure/identity')).DefaultAzureCredential(),
      )
  const container = service.getContainerClient(location.bucket)
  return {
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
        if (status(error) === 409 || status(error) === 412) return false
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
    async list(prefix) {
      const found: Array<{key: string; size: number}> = []
      for await (const blob of container.listBlobsFlat({prefix}))
        found.push({key: blob.name, size: blob.properties.contentLength ?? 0})
      return found
    },
  }
}

async function gcsStore(location: ArtifactLocation, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const {Storage} = await import('@google-cloud/storage')
  // apiEndpoint, not STORAGE_EMULATOR_HOST: the Node client mixes paths with the latter.
  const emulator = env.STORAGE_EMULATOR_HOST
  const storage = new Storage(
    emulator
      ? {apiEndpoint: emulator.replace(/\/$/, ''), projectId: env.GOOGLE_CLOUD_PROJECT || 'emulator'}
      : {projectId: env.GOOGLE_CLOUD_PROJECT},
  )
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
    async putIfAbsent(key, body) {
      // ifGenerationMatch 0 is GCS's atomic create-if-absent. gcp-storage-emulator ignores preconditions,
      // so an existence check comes first: redundant on GCS, and the emulator's only guard.
      if ((await bucket.file(key).exists())[0]) return false
      try {
        await bucket.file(key).save(body, {resumable: false, preconditionOpts: {ifGenerationMatch: 0}})
        return true
      } catch (error) {
        if (status(error) === 412) return false
        throw error
      }
    },
    async get(key) {
      return (await bucket.file(key).download())[0]
    },
    async delete(key) {
      await bucket.file(key).delete()
    },
    async uploadFile(key, file) {
      await bucket.upload(file, {destination: key, resumable: false})
    },
    async downloadFile(key, file) {
      await bucket.file(key).download({destination: file})
    },
    async list(prefix) {
      const [files] = await bucket.getFiles({prefix})
      return files.map((item) => ({key: item.name, size: Number(item.metadata.size ?? 0)}))
    },
  }
}
