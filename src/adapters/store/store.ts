// One interface over every place backups, replicas and artifacts live: a local directory or an object-store prefix.
// Keys are relative to the store's root ("generations/g1/snapshot.json"), '/'-separated, whatever the backend.

export interface StoreEntry {
  key: string
  size: number
  /** What changes when the object does without its size changing: a file's mtime, an ETag, a GCS generation. */
  version?: string
}

export interface BucketInfo {
  exists: boolean
  /** S3: the bucket's region; GCS: its location; Azure and directories: unknown. */
  region?: string
}

export interface Store {
  /** As the user wrote it (no secrets: stores take credentials from the environment). */
  readonly display: string
  /**
   * Every object under `prefix` (a key prefix, '' for all), as it is listed now: an object written meanwhile may or
   * may not be listed, one deleted meanwhile is not. Not in any promised order. `onSkip` hears of names that cannot
   * be keys (a directory's file whose name is not valid UTF-8), printable, relative to the root, '/' after a directory.
   */
  entries(prefix: string, onSkip?: (shown: string) => void): AsyncIterable<StoreEntry>
  /** @throws when the key does not exist (isNotFound tells that apart from other failures) */
  get(key: string): Promise<Buffer>
  put(key: string, body: Buffer): Promise<void>
  /** Creates the object only if no object has that key (the store checks, atomically). False if one exists. */
  putIfAbsent(key: string, body: Buffer): Promise<boolean>
  /** @throws when the key does not exist on stores that say so (isNotFound tells) */
  delete(key: string): Promise<void>
  /** Streams a local file up (multipart where the store needs it): memory stays flat. */
  uploadFile(key: string, file: string): Promise<void>
  downloadFile(key: string, file: string): Promise<void>
  describe(): Promise<BucketInfo>
  /** A directory's file can be read where it is; undefined for stores that must download it first. */
  localPath(key: string): string | undefined
}

/** Opens the store a URL names; the registry in index.ts maps each scheme to one of these. */
export type StoreOpener = (url: string, env: NodeJS.ProcessEnv) => Promise<Store>

/** The HTTP status an SDK's error carries, each in its own field. */
export const httpStatus = (error: unknown): number | string | undefined =>
  (error as {$metadata?: {httpStatusCode?: number}})?.$metadata?.httpStatusCode ??
  (error as {statusCode?: number})?.statusCode ??
  (error as {code?: number | string})?.code

/** Whether a failure means "no such object": each SDK, and the file system, says it its own way. */
export function isNotFound(error: unknown): boolean {
  return [404, 'NoSuchKey', 'NotFound', 'BlobNotFound', 'ENOENT'].includes(
    httpStatus(error) ?? (error as {name?: string})?.name ?? '',
  )
}

/** Every entry under `prefix`, sorted by key. */
export async function listAll(store: Store, prefix = ''): Promise<StoreEntry[]> {
  const found: StoreEntry[] = []
  for await (const entry of store.entries(prefix)) found.push(entry)
  return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}

/**
 * A store over a bucket client whose keys are absolute in the bucket: keys are made relative to `prefix` (the
 * URL's path), so that a listing of 'team-a/' never takes in 'team-ab/'.
 */
export function rootedAt(
  prefix: string,
  display: string,
  bucket: Omit<Store, 'display' | 'localPath' | 'entries'> & {list(prefix: string): AsyncIterable<StoreEntry>},
): Store {
  const base = prefix ? `${prefix}/` : ''
  const key = (name: string) => `${base}${name}`
  return {
    display,
    async *entries(under) {
      for await (const entry of bucket.list(key(under)))
        if (!entry.key.endsWith('/')) yield {...entry, key: entry.key.slice(base.length)} // folder placeholders
    },
    get: (name) => bucket.get(key(name)),
    put: (name, body) => bucket.put(key(name), body),
    putIfAbsent: (name, body) => bucket.putIfAbsent(key(name), body),
    delete: (name) => bucket.delete(key(name)),
    uploadFile: (name, file) => bucket.uploadFile(key(name), file),
    downloadFile: (name, file) => bucket.downloadFile(key(name), file),
    describe: () => bucket.describe(),
    localPath: () => undefined,
  }
}
