// Where `storage report` and `gc` run, chosen once from the flags: a deployment's ops endpoint (--guid), a dev
// instance's (--dev DIR), or the storage tool on this machine for a self-hosted store (--db URL --artifacts-source).
import {resolve} from 'node:path'

import type {Settings} from '../config/load.js'
import type {StorageMode} from '../core/bundle.js'
import {devDoctorTarget} from '../core/dev.js'
import type {StorageSite, StorageTarget} from '../core/storage.js'
import {redact} from '../core/redact.js'
import {NEWEST_KNOWN_MLFLOW} from '../core/versions.js'
import {CheckFailedError} from '../errors.js'
import {opsEndpoint, type ConnectTransferOptions} from '../adapters/connect/ops-client.js'
import {mlflowVenvPython} from '../adapters/python/mlflow-venv.js'
import {opsStorageSite} from '../adapters/storage/ops-site.js'
import {toolStorageSite} from '../adapters/storage/tool-site.js'
import {isObjectStoreUrl, OBJECT_STORE_SCHEMES, storeScheme, type ObjectStoreScheme} from '../core/artifact-url.js'
import {createDevDeps} from './dev.js'
import {createBackupDeps} from './backup.js'
import {createBackup, type CreateResult} from '../core/backup/create.js'
import {parseBackupSource} from '../core/backup/locations.js'
import {openRepository} from '../adapters/backup/repository.js'
import {resolvePassphrase} from '../adapters/backup/crypto.js'

/** The storage mode whose requirements carry each object store's SDK. */
const CLOUD_MODE_OF_STORE: Partial<Record<ObjectStoreScheme | 'none', StorageMode>> = {
  s3: 'aws',
  wasbs: 'azure',
  gs: 'gcp',
}

export interface ResolvedStorageSite {
  site: StorageSite
  /** What `backup create --source` takes for the same store (the backup before a purge). */
  backupSource: {source: string; artifactsSource?: string}
  /** Secrets the site's messages may carry (a dev instance's key and ops token). */
  secrets: string[]
}

export async function storageSite(
  settings: Settings,
  target: StorageTarget,
  options: {transfer: ConnectTransferOptions; onProgress(line: string): void},
): Promise<ResolvedStorageSite> {
  const {onProgress} = options
  if (target.kind === 'connect') {
    const endpoint = await opsEndpoint(options.transfer, target.guid)
    const location = `connect:${target.guid}`
    return {
      site: {...opsStorageSite(endpoint, location), guid: target.guid},
      backupSource: {source: location},
      secrets: [],
    }
  }
  if (target.kind === 'dev') {
    const dir = resolve(target.dir)
    const devDeps = createDevDeps({cacheDir: settings.cacheDir, dataDir: settings.dataDir, env: process.env})
    const {facts, reach} = await devDoctorTarget(devDeps, dir)
    if (!reach || !facts.running)
      throw new CheckFailedError('DEV_NOT_RUNNING', `No dev instance of ${dir} is running (${facts.phase}).`, {
        suggestions: [`Start it: mlflowctl dev up ${target.dir}`],
      })
    const endpoint = {
      contentUrl: facts.running.trackingUri.replace(/\/?$/, '/'),
      headers: {Authorization: `Key ${reach.apiKey}`, 'X-Mlflowctl-Ops-Token': reach.opsToken},
    }
    return {
      site: opsStorageSite(endpoint, `dev:${dir}`),
      backupSource: {source: devDeps.paths(dir).data},
      secrets: [reach.apiKey, reach.opsToken],
    }
  }
  const artifacts = isObjectStoreUrl(target.artifacts) ? target.artifacts : resolve(target.artifacts)
  const location = redact(target.url)
  return {
    site: toolStorageSite({
      python: () =>
        mlflowVenvPython(NEWEST_KNOWN_MLFLOW, {
          cacheDir: settings.cacheDir,
          purpose: 'storage',
          onProgress,
          // The artifact store's SDK comes with the cloud mode that uses it.
          storage: CLOUD_MODE_OF_STORE[storeScheme(artifacts, OBJECT_STORE_SCHEMES) ?? 'none'] ?? 'local',
        }),
      databaseUrl: target.url,
      artifacts,
      location,
    }),
    backupSource: {source: target.url, artifactsSource: artifacts},
    secrets: [],
  }
}

export interface BackupBeforeOptions {
  source: string
  artifactsSource?: string
  repo: string
  dataDir: string
  toolVersion: string
  connect: ConnectTransferOptions
  onWarning(message: string): void
}

/** The backup a purge takes first, as `backup create --source … --repo …` would (encrypted when a passphrase is set). */
export async function backupBefore(options: BackupBeforeOptions): Promise<CreateResult> {
  const source = parseBackupSource(
    options.source,
    (path) => resolve(path),
    (url) => redact(url),
  )
  const repository = await openRepository(options.repo, (path) => resolve(path), options.dataDir)
  const passphrase = await resolvePassphrase(undefined)
  const deps = createBackupDeps({
    repository,
    dataDir: options.dataDir,
    onWarning: options.onWarning,
    passphrase,
    connect: options.connect,
  })
  return createBackup(deps, {
    source,
    repo: repository.display,
    artifacts: 'all',
    artifactsSource: options.artifactsSource,
    toolVersion: options.toolVersion,
    encrypted: Boolean(passphrase),
  })
}
