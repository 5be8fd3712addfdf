// Opens the store a location names: a URL whose scheme is in the registry below, else a local directory. A new
// backend is one file beside these and one line here (core/artifact-url.ts lists the schemes, and the compiler
// asks for a backend for each).
import {resolve} from 'node:path'

import {storeScheme, type ObjectStoreScheme} from '../../core/artifact-url.js'
import {openBlobStore} from './azure-blob.js'
import {directoryStore} from './directory.js'
import {openGcsStore} from './gcs.js'
import {openS3Store} from './s3.js'
import type {Store, StoreOpener} from './store.js'

export const STORE_BACKENDS: Record<ObjectStoreScheme, StoreOpener> = {
  s3: openS3Store,
  wasbs: openBlobStore,
  gs: openGcsStore,
}

export interface OpenStoreOptions {
  /** Where the SDKs read endpoints and credentials (default: this process's environment). */
  env?: NodeJS.ProcessEnv
  /** The registry to open from (tests add backends of their own). */
  backends?: Record<string, StoreOpener>
}

/** A URL of a registered scheme, else a directory (relative paths against the working directory). */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store> {
  const backends: Record<string, StoreOpener> = options.backends ?? STORE_BACKENDS
  const scheme = storeScheme(location, Object.keys(backends))
  return scheme ? backends[scheme](location, options.env ?? process.env) : directoryStore(resolve(location))
}

export {isNotFound, listAll, type Store, type StoreEntry} from './store.js'
