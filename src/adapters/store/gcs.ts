// gs://bucket/prefix: Google Cloud Storage; STORAGE_EMULATOR_HOST for an emulator, else the client's default credentials.
import {parseArtifactUrl} from '../../core/artifact-url.js'
import {httpStatus, rootedAt, type StoreOpener} from './store.js'

export const openGcsStore: StoreOpener = async (url, env) => {
  const location = parseArtifactUrl(url)
  const {Storage} = await import('@google-cloud/storage')
  // apiEndpoint, not STORAGE_EMULATOR_HOST: the Node client mixes paths with the latter.
  const emulator = env.STORAGE_EMULATOR_HOST
  const storage = new Storage(
    emulator
      ? {apiEndpoint: emulator.replace(/\/$/, ''), projectId: env.GOOGLE_CLOUD_PROJECT || 'emulator'}
      : {projectId: env.GOOGLE_CLOUD_PROJECT},
  )
  const bucket = storage.bucket(location.bucket)
  return rootedAt(location.prefix, location.display, {
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
        if (httpStatus(error) === 412) return false
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
    async *list(prefix) {
      const [files] = await bucket.getFiles({prefix})
      for (const item of files)
        yield {key: item.name, size: Number(item.metadata.size ?? 0), version: String(item.metadata.generation ?? '')}
    },
  })
}
