import semver from 'semver'

import {UsageError} from '../errors.js'

/**
 * The newest MLflow release this mlflowctl version was tested with, and the default for `init`.
 * (3.18.0 is listed on PyPI but its mlflow-skinny/mlflow-tracing 3.18.0 were not installable when this
 * was written, so 3.17.2 is the newest release that really installs.)
 */
export const NEWEST_KNOWN_MLFLOW = '3.17.2'
/** The last 2.x release. */
export const LAST_MLFLOW_2 = '2.22.5'
export const OLDEST_SUPPORTED_MLFLOW = '2.0.0'

export type AppMode = 'python-api' | 'python-fastapi'

/**
 * Parses an MLflow (PEP 440) release such as "3.17.2", "2.22.0rc0" or "3.1" into a semver string.
 * Pre-releases map to semver pre-release tags so that ordering holds (3.1.0rc0 < 3.1.0).
 * @throws UsageError INVALID_MLFLOW_VERSION for anything else.
 */
export function parseMlflowVersion(input: string): string {
  const match = /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:(a|b|rc)(\d+))?(?:\.post(\d+))?$/.exec(input.trim())
  if (!match) {
    throw new UsageError(
      'INVALID_MLFLOW_VERSION',
      `"${input}" is not an MLflow release version (expected for example ${NEWEST_KNOWN_MLFLOW}).`,
    )
  }
  const [, major, minor, patch = '0', preKind, preNumber] = match
  const base = `${Number(major)}.${Number(minor)}.${Number(patch)}`
  return preKind ? `${base}-${preKind}.${preNumber}` : base
}

/** Checks the version is one the extension supports and returns it normalised to MAJOR.MINOR.PATCH. */
export function supportedMlflowVersion(input: string): string {
  const parsed = parseMlflowVersion(input)
  if (semver.lt(parsed, OLDEST_SUPPORTED_MLFLOW) || semver.major(parsed) > 3) {
    throw new UsageError(
      'UNSUPPORTED_MLFLOW_VERSION',
      `MLflow ${input} is not supported: the extension runs MLflow ${OLDEST_SUPPORTED_MLFLOW} to 3.x.`,
      {
        suggestions: [`Use --mlflow-version ${NEWEST_KNOWN_MLFLOW} (newest known) or ${LAST_MLFLOW_2} (last 2.x).`],
      },
    )
  }
  return input.trim().replace(/^v/, '')
}

/**
 * MLflow 3.3.0 made uvicorn + the FastAPI app (mlflow.server.fastapi_app) the server (#17038); earlier
 * releases, including 3.0-3.2, only have the Flask WSGI app.
 */
export function appModeFor(mlflowVersion: string): AppMode {
  return semver.gte(parseMlflowVersion(mlflowVersion), '3.3.0') ? 'python-fastapi' : 'python-api'
}

export const APP_MODES: readonly AppMode[] = ['python-api', 'python-fastapi']
/** The ASGI-to-WSGI bridge that serves MLflow 3.3+'s FastAPI app as python-api content (see appModeRequirementsFor). */
export const A2WSGI_REQUIREMENT = 'a2wsgi==1.10.10'

/**
 * The app mode a bundle is rendered in: the one asked for (an in-place upgrade keeps the content's mode,
 * which Connect cannot change: error 48), else the natural one for the version.
 * python-fastapi needs MLflow 3.3+ (before it there is no FastAPI app to serve). Pure.
 * @throws UsageError APP_MODE_UNSUPPORTED, INVALID_APP_MODE
 */
export function resolveAppMode(mlflowVersion: string, requested?: string): AppMode {
  if (requested === undefined) return appModeFor(mlflowVersion)
  if (!(APP_MODES as readonly string[]).includes(requested))
    throw new UsageError('INVALID_APP_MODE', `--app-mode ${requested}: use python-api or python-fastapi.`)
  if (requested === 'python-fastapi' && appModeFor(mlflowVersion) === 'python-api') {
    throw new UsageError(
      'APP_MODE_UNSUPPORTED',
      `MLflow ${mlflowVersion} has no FastAPI app (it arrived in 3.3.0): it can only be served as python-api.`,
      {suggestions: ['Use --app-mode python-api, or an MLflow version from 3.3.0.']},
    )
  }
  return requested as AppMode
}

/**
 * What the app mode adds to requirements.txt: python-api content on MLflow 3.3+ serves the full FastAPI app
 * (its FastAPI-only routes: OTLP trace ingestion, jobs, gateway, streamed artifacts) through a2wsgi, a
 * maintained ASGI-to-WSGI adapter; Flask alone would lack those routes. Pure.
 */
export function appModeRequirementsFor(mlflowVersion: string, appMode: AppMode): string[] {
  return appMode === 'python-api' && appModeFor(mlflowVersion) === 'python-fastapi' ? [A2WSGI_REQUIREMENT] : []
}

/** The Python floor of each MLflow release line, as a PEP 440 requirement. */
export function pythonRequiresFor(mlflowVersion: string): string {
  const version = parseMlflowVersion(mlflowVersion)
  if (semver.gte(version, '3.2.0')) return '>=3.10'
  if (semver.gte(version, '2.18.0')) return '>=3.9'
  return '>=3.8'
}

/**
 * The PostgreSQL driver and compatibility pins the bundle needs so that pip resolves a working
 * environment for custom PostgreSQL storage:
 * - MLflow before 3.9.0 allows sqlalchemy<3 but imports a pool class that SQLAlchemy 2.1 removed
 *   (FallbackAsyncAdaptedQueuePool, mlflow/store/db/utils.py; 3.9.0 made the import optional), so a fresh
 *   install fails at import unless SQLAlchemy is < 2.1; with SQLAlchemy 2.0 a plain postgresql:// URL uses psycopg2.
 *   (Found by the upgrade matrix: a 3.0.1 bundle did not start.)
 * - From 3.9.0 pip resolves SQLAlchemy 2.1, where a plain postgresql:// URL means psycopg 3.
 * - MLflow before 2.16 imports pkg_resources, which setuptools 82 removed (81 warns that it will), and a venv made
 *   by uv (as Connect's may be) has no setuptools at all. (Found by the upgrade matrix: 2.9.2 did not import.)
 */
export function driverRequirementsFor(mlflowVersion: string): string[] {
  const version = parseMlflowVersion(mlflowVersion)
  return semver.lt(version, SQLALCHEMY_21_FROM)
    ? [
        'psycopg2-binary==2.9.13',
        'sqlalchemy<2.1',
        ...(semver.lt(version, PKG_RESOURCES_DROPPED_IN) ? ['setuptools<81'] : []),
      ]
    : ['psycopg[binary]==3.3.9']
}

/** The first MLflow release that no longer imports pkg_resources. */
export const PKG_RESOURCES_DROPPED_IN = '2.16.0'

/** The first MLflow release that imports with SQLAlchemy 2.1. */
export const SQLALCHEMY_21_FROM = '3.9.0'

/**
 * What each storage mode adds to requirements.txt, pinned so that a bundle resolves the same way on every
 * deploy. The MLflow-side packages stay unpinned by MLflow itself (it lists them as extras).
 */
export const STORAGE_REQUIREMENTS: Record<string, string[]> = {
  local: [],
  custom: [],
  aws: ['boto3==1.44.8'],
  azure: [
    'azure-storage-blob==12.31.1',
    'azure-identity==1.27.0',
    'python-tds==1.17.1',
    'sqlalchemy-pytds==1.0.3',
    'certifi',
  ],
  gcp: ['google-cloud-storage==3.17.1', 'cloud-sql-python-connector[pg8000,pytds]==1.23.0', 'sqlalchemy-pytds==1.0.3'],
}

/** cloud-sql-python-connector 1.23 needs Python 3.11; the other modes follow MLflow's own floor. */
export function pythonRequiresForBundle(mlflowVersion: string, storage: string): string {
  const floor = pythonRequiresFor(mlflowVersion)
  // A floor satisfied by 3.10 is lower than 3.11.
  return storage === 'gcp' && pythonSatisfies('3.10', floor) ? '>=3.11' : floor
}

/** True when `python` (e.g. "3.11.7") satisfies a ">=X.Y" floor. */
export function pythonSatisfies(python: string, requires: string): boolean {
  const floor = /^>=(\d+)\.(\d+)$/.exec(requires)
  const have = /^(\d+)\.(\d+)/.exec(python)
  if (!floor || !have) return true
  return (
    Number(have[1]) > Number(floor[1]) || (Number(have[1]) === Number(floor[1]) && Number(have[2]) >= Number(floor[2]))
  )
}
