import {createHash} from 'node:crypto'

import {CheckFailedError, ConfigError, InternalError, UsageError} from '../errors.js'
import {placeholdersOf, renderTemplate} from './templates.js'
import {
  STORAGE_REQUIREMENTS,
  appModeRequirementsFor,
  driverRequirementsFor,
  pythonRequiresForBundle,
  pythonSatisfies,
  resolveAppMode,
  supportedMlflowVersion,
  type AppMode,
} from './versions.js'

export const STORAGE_MODES = ['local', 'custom', 'aws', 'azure', 'gcp'] as const
export type StorageMode = (typeof STORAGE_MODES)[number]
/**
 * Env var names the operator must set on the content for each mode (values are never stored). They match
 * CLOUD_REQUIRED in templates/extension/mlflowctl_extension/settings.py; OPTIONAL_ENV have defaults.
 */
export const REQUIRED_ENV: Record<StorageMode, string[]> = {
  local: [],
  custom: ['MLFLOW_BACKEND_STORE_URI', 'MLFLOW_ARTIFACTS_DESTINATION'],
  aws: ['RDS_ENDPOINT', 'RDS_DATABASE', 'RDS_USERNAME', 'AWS_REGION', 'MLFLOW_ARTIFACTS_DESTINATION'],
  azure: ['AZURE_DATABASE_SERVER', 'AZURE_DATABASE_NAME', 'AZURE_DATABASE_USERNAME', 'MLFLOW_ARTIFACTS_DESTINATION'],
  gcp: ['CLOUD_SQL_CONNECTION_NAME', 'CLOUD_SQL_DATABASE', 'CLOUD_SQL_USERNAME', 'MLFLOW_ARTIFACTS_DESTINATION'],
}

export const OPTIONAL_ENV: Record<StorageMode, string[]> = {
  local: ['MLFLOW_DATA_DIR', 'MLFLOWCTL_REPLICA_URL', 'MLFLOWCTL_REPLICA_RETENTION', 'MLFLOWCTL_RETENTION'],
  custom: ['MLFLOWCTL_RETENTION'],
  aws: ['MLFLOWCTL_RETENTION', 'RDS_PORT', 'RDS_DB_TYPE', 'RDS_CA_BUNDLE', 'MLFLOW_S3_ENDPOINT_URL'],
  azure: [
    'MLFLOWCTL_RETENTION',
    'AZURE_DATABASE_TYPE',
    'AZURE_DATABASE_PORT',
    'AZURE_DATABASE_SSLMODE',
    'AZURE_DATABASE_CA_BUNDLE',
    'AZURE_REGION',
    'MLFLOWCTL_AZURE_BLOB_ENDPOINT',
  ],
  gcp: [
    'MLFLOWCTL_RETENTION',
    'CLOUD_SQL_PASSWORD',
    'CLOUD_SQL_DB_TYPE',
    'CLOUD_SQL_IP_TYPE',
    'GOOGLE_CLOUD_PROJECT',
    'MLFLOWCTL_CLOUD_SQL_ADMIN_ENDPOINT',
  ],
}

/** Modes whose credentials come from a Connect OAuth integration unless MLFLOWCTL_CREDENTIALS=ambient. */
export const OAUTH_STORAGE_MODES: readonly StorageMode[] = ['aws', 'azure', 'gcp']

export interface BundleFile {
  path: string
  content: Buffer
}

export interface ConnectManifest {
  version: number
  metadata: {appmode: AppMode; entrypoint: string}
  python: {version: string; package_manager: {name: string; package_file: string}}
  environment: {python: {requires: string}}
  extension: {version: string; [key: string]: unknown}
  files: Record<string, {checksum: string}>
  [key: string]: unknown
}

/** mlflowctl.json: what mlflowctl rendered, read back by the extension and by later commands. */
export interface BundleInfo {
  bundleFormat: 1
  extensionVersion: string
  mlflowVersion: string
  appMode: AppMode
  storage: StorageMode
  requiredEnv: string[]
  renderedBy: string
  /** The object store the replica goes to (MLFLOWCTL_REPLICA_URL): its SDK is in requirements.txt. */
  replicaStore?: ReplicaStore | null
}

export interface RenderBundleOptions {
  storage: StorageMode
  mlflowVersion: string
  pythonVersion: string
  toolVersion: string
  /** Pin the app mode (an in-place upgrade keeps the content's); default: the version's natural mode. */
  appMode?: AppMode
  /** Local storage replicated to an object store: its SDK goes into requirements.txt. */
  replicaStore?: ReplicaStore | null
}

export const REPLICA_STORES = ['s3', 'wasbs', 'gs'] as const
export type ReplicaStore = (typeof REPLICA_STORES)[number]

/** The SDK each object-store replica needs (the same pins as the storage mode that uses that store). */
export const REPLICA_REQUIREMENTS: Record<ReplicaStore, string[]> = {
  s3: STORAGE_REQUIREMENTS.aws.filter((line) => line.startsWith('boto3')),
  wasbs: STORAGE_REQUIREMENTS.azure.filter((line) => /^azure-(storage-blob|identity)=/.test(line)),
  gs: STORAGE_REQUIREMENTS.gcp.filter((line) => line.startsWith('google-cloud-storage')),
}

export interface RenderedBundle {
  files: BundleFile[]
  manifest: ConnectManifest
  info: BundleInfo
}

export const MANIFEST = 'manifest.json'
const TEMPLATE_SUFFIX = '.tmpl'

export function md5Hex(content: Buffer): string {
  return createHash('md5').update(content).digest('hex')
}

/** Reads EXTENSION_VERSION from the extension package so that the two never disagree. */
export function extensionVersionOf(templates: BundleFile[]): string {
  const init = templates.find((file) => file.path === 'mlflowctl_extension/__init__.py')
  const match = init && /^EXTENSION_VERSION\s*=\s*"([^"]+)"/m.exec(init.content.toString('utf8'))
  if (!match)
    throw new InternalError('templates/extension/mlflowctl_extension/__init__.py does not define EXTENSION_VERSION.')
  return match[1]
}

/** Checks a storage mode is known. @throws UsageError */
export function checkStorageMode(storage: string): StorageMode {
  if (!(STORAGE_MODES as readonly string[]).includes(storage)) {
    throw new UsageError(
      'UNKNOWN_STORAGE_MODE',
      `Unknown storage mode "${storage}"; use one of ${STORAGE_MODES.join(', ')}.`,
    )
  }
  return storage as StorageMode
}

/**
 * Renders the template set into the files of a deployable bundle: `*.tmpl` files are rendered and lose
 * the suffix, the rest are copied, and manifest.json gets the hex MD5 of every other file. Pure.
 * @throws UsageError for an unsupported version, or a Python too old for it.
 */
export function renderBundle(templates: BundleFile[], options: RenderBundleOptions): RenderedBundle {
  const mlflowVersion = supportedMlflowVersion(options.mlflowVersion)
  const storage = checkStorageMode(options.storage)
  const pythonRequires = pythonRequiresForBundle(mlflowVersion, storage)
  if (!pythonSatisfies(options.pythonVersion, pythonRequires)) {
    throw new UsageError(
      'PYTHON_TOO_OLD',
      `MLflow ${mlflowVersion} needs Python ${pythonRequires}; the bundle would record Python ${options.pythonVersion}.`,
    )
  }
  const appMode = resolveAppMode(mlflowVersion, options.appMode)
  const replicaStore = options.replicaStore ?? null
  if (replicaStore && storage !== 'local')
    throw new UsageError(
      'USAGE',
      `--replica-store ${replicaStore}: replication covers local storage only; storage ${storage} keeps its data in its own database and store.`,
    )
  const extensionVersion = extensionVersionOf(templates)
  const values: Record<string, string> = {
    toolVersion: options.toolVersion,
    mlflowVersion,
    databaseDrivers: driverRequirementsFor(mlflowVersion).join('\n'),
    appModeRequirements:
      appModeRequirementsFor(mlflowVersion, appMode).length > 0
        ? `# python-api content on MLflow 3.3+: the full FastAPI app through an ASGI-to-WSGI bridge.\n${appModeRequirementsFor(mlflowVersion, appMode).join('\n')}`
        : '# App mode python-fastapi (or MLflow < 3.3): no bridge.',
    storageRequirements: [
      STORAGE_REQUIREMENTS[storage].length > 0
        ? `# Storage mode ${storage}: cloud SDKs and drivers.\n${STORAGE_REQUIREMENTS[storage].join('\n')}`
        : '# Storage mode local/custom: no cloud SDKs.',
      ...(replicaStore
        ? [`# Replica in ${replicaStore}:// (MLFLOWCTL_REPLICA_URL).\n${REPLICA_REQUIREMENTS[replicaStore].join('\n')}`]
        : []),
    ].join('\n'),
    replicaStore: JSON.stringify(replicaStore),
    appMode,
    pythonVersion: options.pythonVersion,
    pythonRequires,
    extensionVersion,
    storage,
    requiredEnv: JSON.stringify(REQUIRED_ENV[storage]),
  }
  const used = new Set<string>()
  const rendered: BundleFile[] = templates.map((file) => {
    if (!file.path.endsWith(TEMPLATE_SUFFIX)) return file
    const text = file.content.toString('utf8')
    const keys = placeholdersOf(text)
    keys.forEach((key) => used.add(key))
    const subset = Object.fromEntries(keys.filter((key) => key in values).map((key) => [key, values[key]]))
    const output = renderTemplate(file.path, text, subset).replace(/\n{2,}$/, '\n')
    return {path: file.path.slice(0, -TEMPLATE_SUFFIX.length), content: Buffer.from(output)}
  })
  const unused = Object.keys(values).filter((key) => !used.has(key))
  if (unused.length > 0) throw new InternalError(`Template values used by no template: ${unused.join(', ')}.`)
  const skeleton = rendered.find((file) => file.path === MANIFEST)
  if (!skeleton) throw new InternalError('templates/extension has no manifest.json.tmpl.')
  const files = rendered.filter((file) => file.path !== MANIFEST).sort((a, b) => a.path.localeCompare(b.path))
  const manifest = JSON.parse(skeleton.content.toString('utf8')) as ConnectManifest
  manifest.files = Object.fromEntries(files.map((file) => [file.path, {checksum: md5Hex(file.content)}]))
  const info = JSON.parse(files.find((file) => file.path === 'mlflowctl.json')!.content.toString('utf8')) as BundleInfo
  return {
    files: [...files, {path: MANIFEST, content: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`)}],
    manifest,
    info,
  }
}

export interface ManifestCheck {
  stale: string[]
  missing: string[]
}

/** Parses manifest.json text and checks its shape. @throws ConfigError MANIFEST_INVALID */
export function parseManifest(text: string, where: string): ConnectManifest {
  let manifest: ConnectManifest
  try {
    manifest = JSON.parse(text) as ConnectManifest
  } catch (error) {
    throw new ConfigError('MANIFEST_INVALID', `${where} is not valid JSON: ${(error as Error).message}.`)
  }
  const files = manifest?.files
  if (
    manifest?.version !== 1 ||
    !manifest.metadata?.appmode ||
    !manifest.metadata?.entrypoint ||
    !files ||
    typeof files !== 'object'
  ) {
    throw new ConfigError(
      'MANIFEST_INVALID',
      `${where} is not a Connect manifest (needs version 1, metadata.appmode, metadata.entrypoint and files).`,
    )
  }
  for (const [path, entry] of Object.entries(files)) {
    if (path.startsWith('/') || path.split('/').includes('..') || !/^[0-9a-f]{32}$/.test(entry?.checksum ?? '')) {
      throw new ConfigError(
        'MANIFEST_INVALID',
        `${where} lists "${path}" with an unsafe path or a checksum that is not hex MD5.`,
      )
    }
  }
  return manifest
}

/** Compares the manifest's checksums with the files' actual MD5s (undefined = file missing). Pure. */
export function checkManifest(manifest: ConnectManifest, actualMd5: Record<string, string | undefined>): ManifestCheck {
  const stale: string[] = []
  const missing: string[] = []
  for (const [path, {checksum}] of Object.entries(manifest.files)) {
    const actual = actualMd5[path]
    if (actual === undefined) missing.push(path)
    else if (actual !== checksum) stale.push(path)
  }
  return {stale, missing}
}

/** @throws CheckFailedError MANIFEST_STALE when files changed or vanished since the manifest was written. */
export function assertManifestFresh(check: ManifestCheck, dir: string): void {
  if (check.stale.length === 0 && check.missing.length === 0) return
  const parts = [
    check.stale.length > 0 ? `changed since manifest.json was written: ${check.stale.join(', ')}` : '',
    check.missing.length > 0 ? `listed but missing: ${check.missing.join(', ')}` : '',
  ].filter(Boolean)
  throw new CheckFailedError(
    'MANIFEST_STALE',
    `The bundle in ${dir} does not match its manifest.json (${parts.join('; ')}).`,
    {
      suggestions: [
        'Undo the edits, or re-render the bundle with `mlflowctl init DIR --force --storage MODE --mlflow-version X`.',
      ],
    },
  )
}
