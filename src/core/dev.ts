import {ExternalError} from '../errors.js'
import {assertManifestFresh, checkManifest, type BundleInfo, type ConnectManifest} from './bundle.js'
import type {EnvVar} from './env-vars.js'
import type {StepRunner} from './ports.js'
import {parseOpsStatus, type OpsStatus} from './extension-contract.js'
import type {DevInstanceFacts} from './doctor/context.js'

/** Port types (implemented in adapters/dev); kept structural so core imports no adapter. */
export interface DevPaths {
  root: string
  log: string
  data: string
  run: string
}
export interface DevIdentity {
  guid: string
  apiKey: string
  opsToken: string
  port?: number
}
export interface DevStateView {
  supervisorPid: number
  proxyPort?: number
  phase: 'starting' | 'ready' | 'failed' | 'stopped'
  exitCode?: number | null
  mlflowVersion: string
  appMode: string
  storage: string
  envNames: string[]
  startedAt: string
  message?: string
}

export interface DevDeps {
  readBundle(dir: string): Promise<{
    manifest: ConnectManifest
    info: BundleInfo
    requirements: string
    md5: Record<string, string | undefined>
  }>
  pythonVersion(): Promise<string>
  ensureVenv(
    requirements: string,
    pythonVersion: string,
    report: (line: string) => void,
  ): Promise<{python: string; key: string; reused: boolean}>
  paths(bundleDir: string): DevPaths
  identity(paths: DevPaths, port?: number): Promise<DevIdentity>
  state(paths: DevPaths): Promise<DevStateView | undefined>
  isAlive(pid: number | undefined): boolean
  copyBundle(bundleDir: string, files: string[], runDir: string): Promise<void>
  launch(
    paths: DevPaths,
    spec: {
      python: string
      appMode: string
      identity: DevIdentity
      env: Record<string, string>
      state: Omit<DevStateView, 'supervisorPid' | 'phase' | 'startedAt'> & {bundleDir: string}
    },
  ): Promise<number>
  stop(pid: number): Promise<void>
  logTail(paths: DevPaths, lines: number): Promise<string>
  getJson(url: string, headers: Record<string, string>): Promise<{status: number; body: unknown}>
  sleep(ms: number): Promise<void>
  now(): number
}

export interface DevUpOptions {
  bundleDir: string
  port?: number
  env: EnvVar[]
  timeoutMs: number
}

/** Where a running dev instance answers. It holds no key: only dev up prints the key (README "Local runs: dev"). */
export interface DevEndpoint {
  bundleDir: string
  guid: string
  trackingUri: string
  mlflowVersion: string
  storage: string
  appMode: string
  dataDir: string
  logFile: string
  supervisorPid: number
  port: number
}

export interface DevUpResult extends DevEndpoint {
  /** The key the local proxy requires, printed on purpose by dev up (text and JSON alike) and by nothing else. */
  apiKey: string
  /** The UI's login link; it carries the key. */
  uiUrl: string
  alreadyRunning: boolean
  venv?: {key: string; reused: boolean}
}

const POLL_MS = 300

/** What dev up returns: the endpoint and the key, which the user needs to reach it. */
function withKey(endpoint: DevEndpoint, identity: DevIdentity, alreadyRunning: boolean): DevUpResult {
  const base = new URL(endpoint.trackingUri).origin
  return {...endpoint, apiKey: identity.apiKey, uiUrl: `${base}/__login__?key=${identity.apiKey}`, alreadyRunning}
}

function endpoint(bundleDir: string, paths: DevPaths, guid: string, state: DevStateView): DevEndpoint {
  const base = `http://127.0.0.1:${state.proxyPort}`
  return {
    bundleDir,
    guid,
    trackingUri: `${base}/content/${guid}`,
    mlflowVersion: state.mlflowVersion,
    storage: state.storage,
    appMode: state.appMode,
    dataDir: paths.data,
    logFile: paths.log,
    supervisorPid: state.supervisorPid,
    port: state.proxyPort!,
  }
}

/**
 * Starts (or finds running) the bundle in `bundleDir`: checks the manifest, builds or reuses the venv,
 * copies the bundle to a fresh run dir, starts the supervisor and waits until /health answers.
 * @throws CheckFailedError MANIFEST_STALE; ExternalError DEV_START_FAILED / DEV_START_TIMEOUT
 */
export async function devUp(deps: DevDeps, options: DevUpOptions, runner: StepRunner): Promise<DevUpResult> {
  const paths = deps.paths(options.bundleDir)
  const current = await deps.state(paths)
  if (current && deps.isAlive(current.supervisorPid) && current.phase === 'ready') {
    const identity = await deps.identity(paths)
    return withKey(endpoint(options.bundleDir, paths, identity.guid, current), identity, true)
  }
  const bundle = await runner.step('Check the bundle', async () => {
    const read = await deps.readBundle(options.bundleDir)
    assertManifestFresh(checkManifest(read.manifest, read.md5), options.bundleDir)
    return read
  })
  const venv = await runner.step(`Python environment for MLflow ${bundle.info.mlflowVersion}`, async (report) =>
    deps.ensureVenv(bundle.requirements, await deps.pythonVersion(), report),
  )
  const identity = await deps.identity(paths, options.port)
  const state = await runner.step('Start the extension behind the Connect-style proxy', async (report) => {
    await deps.copyBundle(options.bundleDir, [...Object.keys(bundle.manifest.files), 'manifest.json'], paths.run)
    const pid = await deps.launch(paths, {
      python: venv.python,
      appMode: bundle.manifest.metadata.appmode,
      identity,
      env: Object.fromEntries(options.env.map(({name, value}) => [name, value])),
      state: {
        bundleDir: options.bundleDir,
        mlflowVersion: bundle.info.mlflowVersion,
        appMode: bundle.manifest.metadata.appmode,
        storage: bundle.info.storage,
        envNames: options.env.map((v) => v.name),
      },
    })
    return waitUntilSettled(deps, paths, pid, options.timeoutMs, report)
  })
  // Remember the port so that the tracking URI survives down/up.
  await deps.identity(paths, state.proxyPort)
  return {
    ...withKey(endpoint(options.bundleDir, paths, identity.guid, state), identity, false),
    venv: {key: venv.key, reused: venv.reused},
  }
}

export async function waitUntilSettled(
  deps: DevDeps,
  paths: DevPaths,
  pid: number,
  timeoutMs: number,
  report: (line: string) => void,
): Promise<DevStateView> {
  const deadline = deps.now() + timeoutMs
  let reported: string | undefined
  for (;;) {
    const state = await deps.state(paths)
    if (state?.supervisorPid === pid && state.phase === 'ready') return state
    const failed = state?.supervisorPid === pid && (state.phase === 'failed' || state.phase === 'stopped')
    if (failed || !deps.isAlive(pid)) throw await startFailure(deps, paths, state?.message)
    if (deps.now() > deadline) {
      await deps.stop(pid)
      throw new ExternalError(
        'DEV_START_TIMEOUT',
        `The extension did not answer /health within ${Math.round(timeoutMs / 1000)} s.`,
        {
          suggestions: [`Read the log: mlflowctl dev logs ${paths.root}`, 'Raise --timeout if the machine is slow.'],
        },
      )
    }
    // One line per phase: outside a terminal every report is a line of its own.
    const phase =
      state?.phase === 'starting'
        ? state.message
          ? `the extension ${state.message}`
          : 'waiting for /health'
        : 'starting'
    if (phase !== reported) report((reported = phase))
    await deps.sleep(POLL_MS)
  }
}

/** Builds the error for a start that failed, leading with the extension's own refusal if it logged one. */
async function startFailure(deps: DevDeps, paths: DevPaths, message?: string): Promise<ExternalError> {
  const tail = await deps.logTail(paths, 25)
  const refusal = tail
    .split('\n')
    .map((line) => {
      try {
        return JSON.parse(line) as {event?: string; msg?: string}
      } catch {
        return undefined
      }
    })
    .find((entry) => entry?.event === 'startup.refused')
  const headline = refusal?.msg
    ? `The extension refused to start: ${refusal.msg}`
    : `The extension failed to start (${message ?? 'no reason logged'}).`
  return new ExternalError('DEV_START_FAILED', `${headline}\nLast log lines:\n${tail}`, {
    suggestions: [`Full log: ${paths.log}`],
  })
}

export interface DevStatusResult {
  bundleDir: string
  running: boolean
  phase: string
  endpoint?: DevEndpoint
  health?: number
  ops?: Record<string, unknown>
  logFile: string
  /** Where the instance keeps its data (CONNECT_CONTENT_DATA_DIR), running or not: what backup create --source takes. */
  dataDir: string
}

/** Reads the instance's state and, when it runs, /health and the ops status through the proxy. Never writes. */
export async function devStatus(deps: DevDeps, bundleDir: string): Promise<DevStatusResult> {
  const paths = deps.paths(bundleDir)
  const state = await deps.state(paths)
  const running = Boolean(state && deps.isAlive(state.supervisorPid) && state.phase === 'ready')
  if (!state || !running)
    return {bundleDir, running: false, phase: state?.phase ?? 'never started', logFile: paths.log, dataDir: paths.data}
  const identity = await deps.identity(paths)
  const info = endpoint(bundleDir, paths, identity.guid, state)
  const auth = {Authorization: `Key ${identity.apiKey}`}
  const health = await deps.getJson(`${info.trackingUri}/health`, auth).catch(() => ({status: 0, body: undefined}))
  const ops = await deps
    .getJson(`${info.trackingUri}/_mlflowctl/status`, {...auth, 'X-Mlflowctl-Ops-Token': identity.opsToken})
    .catch(() => undefined)
  return {
    bundleDir,
    running: health.status === 200,
    phase: state.phase,
    endpoint: info,
    health: health.status,
    ops: ops?.status === 200 ? readableStatus(ops.body) : undefined,
    logFile: paths.log,
    dataDir: paths.data,
  }
}

export interface DevDownResult {
  bundleDir: string
  wasRunning: boolean
  dataDir: string
}

/** Stops the supervisor (which stops MLflow); the data dir is kept. */
export async function devDown(deps: DevDeps, bundleDir: string): Promise<DevDownResult> {
  const paths = deps.paths(bundleDir)
  const state = await deps.state(paths)
  const wasRunning = Boolean(state && deps.isAlive(state.supervisorPid))
  if (state && wasRunning) await deps.stop(state.supervisorPid)
  return {bundleDir, wasRunning, dataDir: paths.data}
}

/** dev status shows what it can: a status it cannot read is left out rather than failing the command. */
function readableStatus(body: unknown): OpsStatus | undefined {
  try {
    return parseOpsStatus(body)
  } catch {
    return undefined
  }
}

/** What doctor --dev needs to diagnose the instance of `bundleDir`: its facts, and the URL and keys to reach it. */
export interface DevDoctorTarget {
  facts: DevInstanceFacts
  /** The proxy's base URL, key and ops token when it runs. */
  reach?: {server: string; apiKey: string; opsToken: string}
}

/** Reads the instance's state and identity. Never writes, never calls the instance (doctor's checks do). */
export async function devDoctorTarget(deps: DevDeps, bundleDir: string): Promise<DevDoctorTarget> {
  const paths = deps.paths(bundleDir)
  const state = await deps.state(paths)
  const alive = Boolean(state && deps.isAlive(state.supervisorPid))
  const phase = !state ? 'never started' : alive ? state.phase : state.phase === 'ready' ? 'stopped' : state.phase
  const facts: DevInstanceFacts = {bundleDir, phase, logFile: paths.log}
  if (!state || !alive || state.phase !== 'ready') return {facts}
  const identity = await deps.identity(paths)
  const info = endpoint(bundleDir, paths, identity.guid, state)
  return {
    facts: {
      ...facts,
      running: {
        guid: info.guid,
        trackingUri: info.trackingUri,
        mlflowVersion: info.mlflowVersion,
        appMode: info.appMode,
        supervisorPid: info.supervisorPid,
      },
    },
    reach: {server: `http://127.0.0.1:${info.port}/`, apiKey: identity.apiKey, opsToken: identity.opsToken},
  }
}
