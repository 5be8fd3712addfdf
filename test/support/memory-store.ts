// A store held in a map: a whole backend in one file, registered for a test with one line
// (openStore(url, {backends: {...STORE_BACKENDS, memory: openMemoryStore}})).
import {createHash} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'

import type {Store, StoreOpener} from '../../src/adapters/store/store.js'

/** Buckets by name, shared by every store opened in this process (as one server would be). */
export const MEMORY_BUCKETS = new Map<string, Map<string, Buffer>>()

const missing = (key: string) => Object.assign(new Error(`${key}: no such object`), {statusCode: 404})

/** memory://bucket/prefix */
export const openMemoryStore: StoreOpener = async (url) => {
  const [, bucketName, prefix = ''] = /^memory:\/\/([^/]+)\/?(.*)$/.exec(url) ?? []
  if (!bucketName) throw new Error(`${url} is not memory://bucket/prefix`)
  if (!MEMORY_BUCKETS.has(bucketName)) MEMORY_BUCKETS.set(bucketName, new Map())
  const objects = MEMORY_BUCKETS.get(bucketName)!
  const base = prefix.replace(/\/+$/, '') ? `${prefix.replace(/\/+$/, '')}/` : ''
  const get = (key: string) => {
    const body = objects.get(base + key)
    if (!body) throw missing(key)
    return Buffer.from(body)
  }
  const store: Store = {
    display: url,
    async *entries(under) {
      for (const [key, body] of [...objects])
        if (key.startsWith(base + under))
          // An S3-style ETag: the MD5 of the bytes.
          yield {key: key.slice(base.length), size: body.length, version: createHash('md5').update(body).digest('hex')}
    },
    get: async (key) => get(key),
    put: async (key, body) => void objects.set(base + key, Buffer.from(body)),
    async putIfAbsent(key, body) {
      if (objects.has(base + key)) return false
      objects.set(base + key, Buffer.from(body))
      return true
    },
    async delete(key) {
      if (!objects.delete(base + key)) throw missing(key)
    },
    uploadFile: async (key, file) => void objects.set(base + key, await readFile(file)),
    downloadFile: async (key, file) => writeFile(file, get(key)),
    describe: async () => ({exists: true}),
    localPath: () => undefined,
  }
  return store
}
