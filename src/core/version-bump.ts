/**
 * `version bump`: choose the target MLflow release and rewrite the three files of a rendered bundle that
 * depend on it (requirements.txt, mlflowctl.json, manifest.json). Pure: the adapter reads and writes.
 */
import semver from 'semver'

import {UsageError} from '../errors.js'
import {MANIFEST, md5Hex, renderBundle, type BundleFile, type BundleInfo, type ConnectManifest} from './bundle.js'
import {parseMlflowVersion, pythonSatisfies, type AppMode} from './versions.js'

export type BumpSelector =
  {kind: 'to'; version: string; allowDowngrade?: boolean} | {kind: 'patch' | 'minor' | 'major' | 'latest'}

/** A final release as PyPI (or, offline, the migration catalog) lists it. */
export interface AvailableRelease {
  version: string
  requiresPython?: string
}

export interface BumpInput {
  info: BundleInfo
  manifest: ConnectManifest
  requirements: string
  /** The bundle's other files (path → content), for the manifest's checksums. */
  files: Map<string, Buffer>
  templates: BundleFile[]
  toolVersion: string
  /** The app mode to render; default: the bundle's own. A deployed item's mode cannot change on Connect
   * (error 48), so an in-place upgrade keeps it unless told otherwise. */
  appMode?: AppMode
}

export interface BumpResult {
  from: string
  to: string
  changed: boolean
  appMode: {from: string; to: string}
  pythonRequires: {from: string; to: string}
  /** Files rewritten, with their new content (only when changed). */
  writes: BundleFile[]
  /** Requirement lines the operator added, kept as they were. */
  keptLines: string[]
  warnings: string[]
}

/** Picks the target release. @throws UsageError VERSION_UNKNOWN / NO_NEWER_RELEASE */
export function selectTarget(current: string, releases: AvailableRelease[], selector: BumpSelector): AvailableRelease {
  const finals = releases
    .filter((r) => semver.valid(r.version) && !semver.prerelease(r.version))
    .sort((a, b) => semver.compare(a.version, b.version))
  if (selector.kind === 'to') {
    const wanted = semver.valid(parseMlflowVersion(selector.version))
    const found = finals.find((r) => r.version === wanted)
    if (!found)
      throw new UsageError('VERSION_UNKNOWN', `MLflow ${selector.version} is not a released final version.`, {
        suggestions: [`Newest: ${finals.at(-1)?.version ?? 'unknown'}.`],
      })
    // A database the current MLflow migrated is ahead of an older one, which refuses to start on it.
    if (semver.lt(found.version, parseMlflowVersion(current)) && !selector.allowDowngrade)
      throw new UsageError(
        'DOWNGRADE_REFUSED',
        `--to ${found.version} is older than the bundle's MLflow ${current}: a database ${current} has migrated is ahead of MLflow ${found.version}, which refuses to start on it.`,
        {
          suggestions: [
            `Pass --allow-downgrade if the database was never migrated by ${current}, or after restoring a backup taken with ${found.version}.`,
          ],
        },
      )
    return found
  }
  const base = parseMlflowVersion(current)
  const inRange = finals.filter((r) => {
    if (selector.kind === 'patch')
      return semver.major(r.version) === semver.major(base) && semver.minor(r.version) === semver.minor(base)
    if (selector.kind === 'minor') return semver.major(r.version) === semver.major(base)
    if (selector.kind === 'major') return semver.major(r.version) === semver.major(base) + 1
    return true
  })
  const target = inRange.at(-1)
  if (!target || semver.lt(target.version, base)) {
    throw new UsageError('NO_NEWER_RELEASE', `No ${selector.kind} release after MLflow ${current} is known.`, {
      suggestions: ['Name the release with --to VERSION.'],
    })
  }
  return target
}

const requirementLines = (text: string) =>
  text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
/** The PEP 503 normalised name a requirement line is about ("MLflow[auth]>=3" → "mlflow"). */
export const requirementName = (line: string) =>
  (/^([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(line)?.[1] ?? '').toLowerCase().replace(/[-_.]+/g, '-')

/**
 * Rewrites requirements.txt, mlflowctl.json and manifest.json for the target. The lines mlflowctl rendered for
 * the old version are replaced by those for the new one (drivers and pins move with MLflow's major); lines the
 * operator added stay. @throws UsageError PYTHON_TOO_OLD when the bundle's Python misses the target's floor.
 */
export function bumpBundle(input: BumpInput, target: AvailableRelease): BumpResult {
  const {info, manifest} = input
  const pythonVersion = manifest.python.version
  if (
    target.requiresPython &&
    !pythonSatisfies(pythonVersion, target.requiresPython.replace(/\s/g, '').split(',')[0])
  ) {
    throw new UsageError(
      'PYTHON_TOO_OLD',
      `MLflow ${target.version} requires Python ${target.requiresPython}; the bundle runs Python ${pythonVersion}.`,
      {
        suggestions: [
          'Re-render the bundle with a newer Python (mlflowctl init DIR --force with MLFLOWCTL_PYTHON), or pick an older release.',
        ],
      },
    )
  }
  const render = (mlflowVersion: string, appMode: AppMode) =>
    renderBundle(input.templates, {
      storage: info.storage,
      mlflowVersion,
      pythonVersion,
      toolVersion: input.toolVersion,
      appMode,
      replicaStore: info.replicaStore,
    })
  const currentMode = (manifest.metadata.appmode ?? info.appMode) as AppMode
  const before = render(info.mlflowVersion, currentMode)
  const after = render(target.version, input.appMode ?? currentMode)
  const text = (bundle: typeof before, path: string) =>
    bundle.files.find((file) => file.path === path)!.content.toString('utf8')
  const oldManaged = new Set(requirementLines(text(before, 'requirements.txt')))
  const newManagedNames = new Set(requirementLines(text(after, 'requirements.txt')).map(requirementName))
  const current = requirementLines(input.requirements)
  const warnings: string[] = []
  // Lines mlflowctl rendered go; so does any other pin of MLflow's own packages or of a package the new render
  // pins (two pins of one package make pip fail). The rest is the operator's and stays.
  const keptLines = current.filter((line) => {
    if (oldManaged.has(line)) return false
    const name = requirementName(line)
    if (name.startsWith('mlflow') || newManagedNames.has(name)) {
      warnings.push(`requirements.txt line "${line}" is replaced by the pins rendered for MLflow ${target.version}.`)
      return false
    }
    return true
  })
  const missing = [...oldManaged].filter((line) => !current.includes(line) && !/^mlflow==/.test(line))
  if (missing.length > 0)
    warnings.push(
      `requirements.txt had lost rendered lines (${missing.join(', ')}); the rendered ones for ${target.version} are written.`,
    )
  const requirements = `${text(after, 'requirements.txt').trimEnd()}\n${keptLines.length > 0 ? `# Kept from the previous requirements.txt:\n${keptLines.join('\n')}\n` : ''}`
  const newInfo: BundleInfo = {...info, mlflowVersion: after.info.mlflowVersion, appMode: after.info.appMode}
  const rewritten = new Map<string, Buffer>([
    ['requirements.txt', Buffer.from(requirements)],
    ['mlflowctl.json', Buffer.from(`${JSON.stringify(newInfo, null, 2)}\n`)],
  ])
  const unlisted = Object.keys(input.manifest.files).filter((path) => !input.files.has(path) && !rewritten.has(path))
  if (unlisted.length > 0)
    throw new UsageError('BUNDLE_FILE_MISSING', `manifest.json lists files the bundle lacks: ${unlisted.join(', ')}.`, {
      suggestions: ['Re-render the bundle with mlflowctl init DIR --force.'],
    })
  const files = new Map(input.files)
  for (const [path, content] of rewritten) files.set(path, content)
  const newManifest: ConnectManifest = {
    ...manifest,
    metadata: {
      ...manifest.metadata,
      appmode: after.manifest.metadata.appmode,
      entrypoint: after.manifest.metadata.entrypoint,
    },
    environment: {
      ...manifest.environment,
      python: {...manifest.environment?.python, requires: after.manifest.environment.python.requires},
    },
    files: Object.fromEntries(Object.keys(manifest.files).map((path) => [path, {checksum: md5Hex(files.get(path)!)}])),
  }
  const changed =
    info.mlflowVersion !== newInfo.mlflowVersion ||
    input.requirements !== requirements ||
    manifest.metadata.appmode !== newManifest.metadata.appmode
  return {
    from: info.mlflowVersion,
    to: newInfo.mlflowVersion,
    changed,
    appMode: {from: manifest.metadata.appmode, to: newManifest.metadata.appmode},
    pythonRequires: {from: manifest.environment?.python?.requires ?? '', to: newManifest.environment.python.requires},
    writes: changed
      ? [
          ...[...rewritten].map(([path, content]) => ({path, content})),
          {path: MANIFEST, content: Buffer.from(`${JSON.stringify(newManifest, null, 2)}\n`)},
        ]
      : [],
    keptLines,
    warnings,
  }
}
