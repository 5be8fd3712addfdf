// MLflow's released versions from PyPI's JSON API, with the migration catalog as the offline fallback.
import type {AvailableRelease} from '../core/version-bump.js'
import {parseMlflowVersion} from '../core/versions.js'
import {loadCatalog} from './catalog.js'

export const PYPI_URL_ENV = 'MLFLOWCTL_PYPI_URL'

interface PypiFile {
  yanked?: boolean
  requires_python?: string | null
}

/** Final, non-yanked releases. `source` says where they came from; PyPI errors fall back to the catalog. */
export async function mlflowReleases(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{releases: AvailableRelease[]; source: 'pypi' | 'catalog'; warning?: string}> {
  const base = (env[PYPI_URL_ENV] ?? 'https://pypi.org').replace(/\/+$/, '')
  try {
    const response = await fetch(`${base}/pypi/mlflow/json`, {
      signal: AbortSignal.timeout(10_000),
      headers: {accept: 'application/json'},
    })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    const body = (await response.json()) as {releases: Record<string, PypiFile[]>}
    const releases: AvailableRelease[] = []
    for (const [raw, files] of Object.entries(body.releases)) {
      if (files.length === 0 || files.every((file) => file.yanked)) continue
      let version: string
      try {
        version = parseMlflowVersion(raw)
      } catch {
        continue // dev and post releases
      }
      if (version.includes('-')) continue
      releases.push({version, requiresPython: files.find((file) => file.requires_python)?.requires_python ?? undefined})
    }
    return {releases, source: 'pypi'}
  } catch (error) {
    const {catalog} = await loadCatalog()
    return {
      releases: catalog.releases.map((release) => ({
        version: release.version,
        requiresPython: release.requiresPython || undefined,
      })),
      source: 'catalog',
      warning: `PyPI was not reachable (${(error as Error).message}); the releases come from the migration catalog.`,
    }
  }
}
