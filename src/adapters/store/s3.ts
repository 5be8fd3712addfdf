// s3://bucket/prefix: Amazon S3 or an S3-compatible server (MLFLOW_S3_ENDPOINT_URL, as MLflow reads it);
// credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, else the SDK's default chain.
import {createReadStream, createWriteStream} from 'node:fs'
import {pipeline} from 'node:stream/promises'

import {parseArtifactUrl} from '../../core/artifact-url.js'
import {httpStatus, rootedAt, type StoreOpener} from './store.js'

export const openS3Store: StoreOpener = async (url, env) => {
  const location = parseArtifactUrl(url)
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
  return rootedAt(location.prefix, location.display, {
    async describe() {
      try {
        await client.send(new s3.HeadBucketCommand({Bucket}))
      } catch (error) {
        if (httpStatus(error) === 404) return {exists: false}
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
        if (httpStatus(error) === 412) return false
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
    async *list(Prefix) {
      let ContinuationToken: string | undefined
      do {
        const page = await client.send(new s3.ListObjectsV2Command({Bucket, Prefix, ContinuationToken}))
        for (const item of page.Contents ?? []) yield {key: item.Key!, size: item.Size ?? 0, version: item.ETag}
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
      } while (ContinuationToken)
    },
  })
}
