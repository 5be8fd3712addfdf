import {UsageError} from '../errors.js'
import {
  OAUTH_STORAGE_MODES,
  OPTIONAL_ENV,
  renderBundle,
  type BundleFile,
  type ReplicaStore,
  type StorageMode,
} from './bundle.js'
import {NEWEST_KNOWN_MLFLOW, parseMlflowVersion, type AppMode} from './versions.js'
import {closestMatch} from './suggest.js'

export interface InitDeps {
  readTemplates(): Promise<BundleFile[]>
  isEmptyDir(dir: string): Promise<boolean>
  writeFiles(dir: string, files: BundleFile[]): Promise<void>
  pythonVersion(): Promise<string>
  /** The final MLflow releases the migration catalog knows. */
  knownReleases(): Promise<string[]>
  /** The final releases on PyPI, or undefined when it cannot be reached (asked only for a version the catalog lacks). */
  publishedReleases(): Promise<string[] | undefined>
}

export interface InitOptions {
  dir: string
  storage: StorageMode
  /** Local storage replicated to an object store: its SDK in requirements.txt. */
  replicaStore?: ReplicaStore
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
  /** For a release on PyPI that the migration catalog does not know yet: it renders, untested. */
  warnings: string[]
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
  // "3.17" renders as the release it names (3.17.0), so that the pins and the bundle record agree.
  const warnings: string[] = []
  const mlflowVersion = options.mlflowVersion
    ? await releaseToRender(deps, options.mlflowVersion, warnings)
    : NEWEST_KNOWN_MLFLOW
  const pythonVersion = await deps.pythonVersion()
  const rendered = renderBundle(await deps.readTemplates(), {
    storage: options.storage,
    mlflowVersion,
    pythonVersion,
    toolVersion: options.toolVersion,
    appMode: options.appMode,
    replicaStore: options.replicaStore,
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
    warnings,
  }
}

/**
 * The catalog decides first (no network for a release it knows); a version it lacks is looked up on PyPI when PyPI
 * answers: a newer release there renders, with a warning that it is untested and its migrations unknown.
 */
async function releaseToRender(deps: InitDeps, input: string, warnings: string[]): Promise<string> {
  const catalog = await deps.knownReleases()
  try {
    return checkKnownRelease(input, catalog)
  } catch (error) {
    const published =
      (error as UsageError).code === 'MLFLOW_VERSION_UNKNOWN' ? await deps.publishedReleases() : undefined
    if (!published) throw error
    const version = checkKnownRelease(input, published)
    warnings.push(
      `MLflow ${version} is on PyPI but newer than the migration catalog (up to ${catalog.at(-1)}): it is untested with mlflowctl, and db status and upgrade plan cannot list its migrations.`,
    )
    return version
  }
}

/**
 * A version to render must be a release (pip would fail much later, with a long list): "3.17" and "3.99" are
 * refused with the nearest release.
 * @throws UsageError INVALID_MLFLOW_VERSION, MLFLOW_VERSION_UNKNOWN
 */
export function checkKnownRelease(input: string, releases: string[]): string {
  const version = parseMlflowVersion(input)
  // Pre-releases are not in the catalog: rendered as given (version bump --to takes them too).
  if (releases.length === 0 || releases.includes(version) || version.includes('-'))
    return releases.includes(version) ? version : input
  const [major, minor] = version.split('.')
  const sameLine = releases.filter((r) => r.startsWith(`${major}.${minor}.`))
  const nearest = sameLine.at(-1) ?? closestMatch(version, releases) ?? releases.at(-1)
  throw new UsageError(
    'MLFLOW_VERSION_UNKNOWN',
    `MLflow ${input} is not a release mlflowctl knows (${releases[0]} to ${releases.at(-1)}).`,
    {
      suggestions: [`Did you mean --mlflow-version ${nearest}? (Newest tested: ${NEWEST_KNOWN_MLFLOW}.)`],
    },
  )
}
