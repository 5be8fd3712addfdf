/** MLflow-aware verification of a deployed (or draft) extension, shared by deploy and rollback. */

import {parseOpsStatus} from './extension-contract.js'

export interface ProbeResponse {
  status: number
  body: string
}

export interface VerifyDeps {
  get(url: string, headers: Record<string, string>): Promise<ProbeResponse>
}

export interface VerifyOptions {
  /** Base URL of the content, with a trailing slash (the preview URL for a draft). */
  baseUrl: string
  apiKey: string
  opsToken: string
  expectedMlflowVersion: string
}

export interface VerifyCheck {
  id: 'health' | 'version' | 'rest' | 'schema'
  ok: boolean
  detail: string
  /** The HTTP status (0: no answer). */
  status?: number
}

export interface VerifyResult {
  ok: boolean
  checks: VerifyCheck[]
  revision?: string
  expectedHead?: string
}

/**
 * Checks /health, /version against the pinned version, an authenticated REST call and the ops status
 * (DB revision equals the expected head). Reads only.
 */
export async function verifyExtension(deps: VerifyDeps, options: VerifyOptions): Promise<VerifyResult> {
  const auth = {Authorization: `Key ${options.apiKey}`}
  const get = (path: string, headers: Record<string, string> = auth) =>
    deps.get(`${options.baseUrl}${path}`, headers).catch((error: Error) => ({status: 0, body: error.message}))
  const checks: VerifyCheck[] = []
  const health = await get('health')
  checks.push({
    id: 'health',
    ok: health.status === 200,
    detail: `/health answered ${health.status || 'nothing'}`,
    status: health.status,
  })
  const version = await get('version')
  const served = version.body.trim()
  checks.push({
    id: 'version',
    ok: version.status === 200 && served === options.expectedMlflowVersion,
    detail: `/version is ${version.status === 200 ? served : `HTTP ${version.status}`}, expected ${options.expectedMlflowVersion}`,
  })
  const rest = await get('api/2.0/mlflow/experiments/search?max_results=1')
  checks.push({id: 'rest', ok: rest.status === 200, detail: `experiments/search answered ${rest.status || 'nothing'}`})
  const schema = await readSchema(deps, options)
  checks.push(schema.check)
  return {ok: checks.every((check) => check.ok), checks, revision: schema.revision, expectedHead: schema.expectedHead}
}

/** Reads the schema revision and expected head from the ops status endpoint. Reads only. */
export async function readSchema(
  deps: VerifyDeps,
  options: Omit<VerifyOptions, 'expectedMlflowVersion'>,
): Promise<{check: VerifyCheck; revision?: string; expectedHead?: string}> {
  const ops = await deps
    .get(`${options.baseUrl}_mlflowctl/status`, {
      Authorization: `Key ${options.apiKey}`,
      'X-Mlflowctl-Ops-Token': options.opsToken,
    })
    .catch((error: Error) => ({status: 0, body: error.message}))
  let revision: string | undefined
  let expectedHead: string | undefined
  let unreadable: string | undefined
  try {
    const status = parseOpsStatus(ops.body)
    revision = status.dbRevision ?? undefined
    expectedHead = status.expectedHead
  } catch (error) {
    unreadable = (error as Error).message
  }
  const check: VerifyCheck = {
    id: 'schema',
    ok: ops.status === 200 && !unreadable && Boolean(revision) && revision === expectedHead,
    detail:
      ops.status !== 200
        ? `ops status answered ${ops.status || 'nothing'}`
        : (unreadable ?? `schema revision ${revision}, expected head ${expectedHead}`),
  }
  return {check, revision, expectedHead}
}
