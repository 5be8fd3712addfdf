// Artifacts restored into an object store (`backup restore --artifacts-to s3://…|wasbs://…|gs://…`). A bucket has no
// rename to swap a tree in with, so the restore uploads into an empty prefix before it commits the database, and
// deletes what it uploaded when the database does not commit. Objects it did not upload are never deleted.
import {ExternalError} from '../../errors.js'
import {pathKind} from '../fs/safe-fs.js'
import {listAll, openStore} from '../store/index.js'
import {walkArtifacts} from './artifact-source.js'

/** Uploads at once: object stores answer each request slowly and in parallel; 8 keeps a small-file tree moving. */
const UPLOADS_AT_ONCE = 8

/** Objects under the prefix of `url` (its "directory"). Reads only. */
export async function countObjects(url: string): Promise<number> {
  return (await listAll(await openStore(url))).length
}

/**
 * Uploads every file under `dir` to the prefix of `url` (relative paths kept as keys). On failure it deletes what it
 * uploaded and throws ARTIFACTS_UPLOAD_FAILED; `undo` deletes it later (the database did not commit).
 */
export async function uploadArtifactTree(dir: string, url: string): Promise<{files: number; undo(): Promise<void>}> {
  const store = await openStore(url)
  const uploaded: string[] = []
  const undo = async () => {
    for (const key of uploaded.splice(0)) await store.delete(key).catch(() => undefined)
  }
  if ((await pathKind(dir)) === 'missing') return {files: 0, undo}
  const files = walkArtifacts(dir)[Symbol.asyncIterator]()
  const uploader = async () => {
    for (let next = await files.next(); !next.done; next = await files.next()) {
      const key = next.value.name.slice('artifacts/'.length)
      await store.uploadFile(key, next.value.file)
      uploaded.push(key)
    }
  }
  try {
    await Promise.all(Array.from({length: UPLOADS_AT_ONCE}, uploader))
  } catch (error) {
    await undo()
    throw new ExternalError(
      'ARTIFACTS_UPLOAD_FAILED',
      `Uploading the artifacts to ${store.display} failed (${(error as Error).message}); nothing was replaced, and what was uploaded was deleted again.`,
      {suggestions: ['Check the credentials and that the bucket exists, then run the restore again.']},
    )
  }
  return {files: uploaded.length, undo}
}
