/** MLflow-aware verification of a deployed (or draft) extension, shared by deploy and rollback. */

import {describeStartup, parseOpsStatus, startupFromHealth, type StartupView} from './extension-contract.js'

export interface ProbeResponse {
  status: number
  body: string
}

export interface VerifyDeps {
  /** One request; `timeoutMs` bounds it (a cold start holds the first request until the process answers). */
  get(url: string, headers: Record<string, string>, timeoutMs?: number): Promise<ProbeResponse>
  /** For waiting while the extension starts or migrates; without them verification does not wait. */
  sleep?(ms: number): Promise<void>
  now?(): number
}

/** Connect's default start limit (Scheduler.InitTimeout) when neither the item nor the server says otherwise. */
export const DEFAULT_INIT_TIMEOUT_SECONDS = 60
/** Added to the start limit for one request: the proxy's own time on top of the process's start. */
const REQUEST_MARGIN_MS = 15_000
// Once a second: a start takes a few seconds, and each second polled too late is a second longer that a deploy or an
// upgrade waits (a poll costs one /health request).
const START_POLL_MS = 1_000

/** How long one probe may take: Connect holds a cold start's first request for up to the item's start limit. */
export function probeTimeoutMs(initTimeoutSeconds: number | undefined): number {
  return (initTimeoutSeconds ?? DEFAULT_INIT_TIMEOUT_SECONDS) * 1000 + REQUEST_MARGIN_MS
}

export interface VerifyOptions {
  /** Base URL of the content, with a trailing slash (the preview URL for a draft). */
  baseUrl: string
  apiKey: string
  opsToken: string
  expectedMlflowVersion: string
  /** The item's effective init_timeout (seconds): each request's timeout follows it. */
  initTimeoutSeconds?: number
  /** How long to wait while the extension reports that it is starting or migrating (0: not at all). */
  startTimeoutMs?: number
  /** Told what the extension is doing while verification waits for it. */
  report?(line: string): void
  /** A newer revision the extension may serve (an instant rollback): it then counts as the expected schema. */
  aheadAllowed?: string
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
  /** What the extension reported about its start, when /health carried it (refused: why). */
  startup?: StartupView
}

/**
 * Checks /health, /version against the pinned version, an authenticated REST call and the ops status
 * (DB revision equals the expected head). Reads only.
 */
export async function verifyExtension(deps: VerifyDeps, options: VerifyOptions): Promise<VerifyResult> {
  const auth = {Authorization: `Key ${options.apiKey}`}
  const timeoutMs = probeTimeoutMs(options.initTimeoutSeconds)
  const get = (path: string, headers: Record<string, string> = auth) =>
    deps
      .get(`${options.baseUrl}${path}`, headers, timeoutMs)
      .catch((error: Error) => ({status: 0, body: error.message}))
  const checks: VerifyCheck[] = []
  const {health, startup} = await awaitStart(deps, options, () => get('health'))
  checks.push({
    id: 'health',
    ok: health.status === 200,
    detail:
      startup && startup.state !== 'ready'
        ? `the extension ${describeStartup(startup)}`
        : `/health answered ${health.status || 'nothing'}`,
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
  return {
    ok: checks.every((check) => check.ok),
    checks,
    revision: schema.revision,
    expectedHead: schema.expectedHead,
    startup,
  }
}

/** Polls /health while the extension says it is starting or migrating, up to `startTimeoutMs`; reports each
 * change. Returns the last answer and what it said about the start. */
async function awaitStart(
  deps: VerifyDeps,
  options: VerifyOptions,
  health: () => Promise<ProbeResponse>,
): Promise<{health: ProbeResponse; startup?: StartupView}> {
  const now = deps.now ?? Date.now
  const deadline = now() + (options.startTimeoutMs ?? 0)
  let reported = ''
  for (;;) {
    const answer = await health()
    const startup = answer.status === 503 ? startupFromHealth(answer.body) : undefined
    const pending = startup?.state === 'starting' || startup?.state === 'migrating'
    if (!pending || !deps.sleep || now() >= deadline) return {health: answer, startup}
    const line = `The extension ${describeStartup(startup!)}`
    if (line !== reported) options.report?.((reported = line))
    await deps.sleep(START_POLL_MS)
  }
}

/** Reads the schema revision and expected head from the ops status endpoint. Reads only. */
export async function readSchema(
  deps: VerifyDeps,
  options: Pick<VerifyOptions, 'baseUrl' | 'apiKey' | 'opsToken' | 'initTimeoutSeconds' | 'aheadAllowed'>,
): Promise<{check: VerifyCheck; revision?: string; expectedHead?: string}> {
  const ops = await deps
    .get(
      `${options.baseUrl}_mlflowctl/status`,
      {Authorization: `Key ${options.apiKey}`, 'X-Mlflowctl-Ops-Token': options.opsToken},
      probeTimeoutMs(options.initTimeoutSeconds),
    )
    .catch((error: Error) => ({status: 0, body: error.message}))
  let revision: string | undefined
  let expectedHead: string | undefined
  let unreadable: string | undefined
  let servedAhead = false
  try {
    const status = parseOpsStatus(ops.body)
    revision = status.dbRevision ?? undefined
    expectedHead = status.expectedHead
    servedAhead =
      Boolean(options.aheadAllowed) && revision === options.aheadAllowed && status.schemaState === 'ahead-additive'
  } catch (error) {
    unreadable = (error as Error).message
  }
  const check: VerifyCheck = {
    id: 'schema',
    ok: ops.status === 200 && !unreadable && Boolean(revision) && (revision === expectedHead || servedAhead),
    detail:
      ops.status !== 200
        ? `ops status answered ${ops.status || 'nothing'}`
        : (unreadable ??
          (servedAhead
            ? `schema revision ${revision}, ahead of the head ${expectedHead} by migrations that only add (allowed)`
            : `schema revision ${revision}, expected head ${expectedHead}`)),
  }
  return {check, revision, expectedHead}
}
