import {UsageError} from '../errors.js'
import {OAUTH_STORAGE_MODES, OPTIONAL_ENV, renderBundle, type BundleFile, type StorageMode} from './bundle.js'
import {NEWEST_KNOWN_MLFLOW, type AppMode} from './versions.js'

export interface InitDeps {
  readTemplates(): Promise<BundleFile[]>
  isEmptyDir(dir: string): Promise<boolean>
  writeFiles(dir: string, files: BundleFile[]): Promise<void>
  pythonVersion(): Promise<string>
}

export interface InitOptions {
  dir: string
  storage: StorageMode
  mlflowVersion?: string
  /** Pin the app mode (python-api for content first deployed as python-api); default: the version's own. */
  appMode?: AppMode
  force: boolean
  toolVersion: string
}

export interface InitResult {
  dir: string
  storage: StorageMode
  mlflowVersion: string
  appMode: string
  entrypoint: string
  pythonVersion: string
  pythonRequires: string
  extensionVersion: string
  requiredEnv: string[]
  /** Variables with defaults (ports, CA bundles, endpoint overrides). */
  optionalEnv: string[]
  /** True when the extension takes its credentials from a Connect OAuth integration (cloud modes). */
  needsOAuthIntegration: boolean
  files: Array<{path: string; checksum: string}>
}

/**
 * Renders a deployable extension bundle into `dir`.
 * Writes the bundle files (overwriting them with `force`); never deletes anything.
 * @throws UsageError DIR_NOT_EMPTY, or from renderBundle.
 */
export async function initBundle(deps: InitDeps, options: InitOptions): Promise<InitResult> {
  if (!options.force && !(await deps.isEmptyDir(options.dir))) {
    throw new UsageError('DIR_NOT_EMPTY', `${options.dir} is not empty.`, {
      suggestions: [`Pick an empty or new directory, or pass --force to overwrite the bundle files in ${options.dir}.`],
    })
  }
  const pythonVersion = await deps.pythonVersion()
  const rendered = renderBundle(await deps.readTemplates(), {
    storage: options.storage,
    mlflowVersion: options.mlflowVersion ?? NEWEST_KNOWN_MLFLOW,
    pythonVersion,
    toolVersion: options.toolVersion,
    appMode: options.appMode,
  })
  await deps.writeFiles(options.dir, rendered.files)
  const {manifest, info} = rendered
  return {
    dir: options.dir,
    storage: info.storage,
    mlflowVersion: info.mlflowVersion,
    appMode: manifest.metadata.appmode,
    entrypoint: manifest.metadata.entrypoint,
    pythonVersion,
    pythonRequires: manifest.environment.python.requires,
    extensionVersion: info.extensionVersion,
    requiredEnv: info.requiredEnv,
    optionalEnv: OPTIONAL_ENV[info.storage],
    needsOAuthIntegration: OAUTH_STORAGE_MODES.includes(info.storage),
    files: Object.entries(manifest.files).map(([path, {checksum}]) => ({path, checksum})),
  }
}
