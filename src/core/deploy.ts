import {previewUrl, urlsFor} from './content-urls.js'
import {AuthError, CheckFailedError, ConfigError, ExternalError, MlflowctlError, UsageError} from '../errors.js'
import {connectVersionAtLeast, parseConnectVersion} from './connect-version.js'
import type {BundleInfo, ConnectManifest} from './bundle.js'
import type {EnvVar} from './env-vars.js'
import {describeStartup} from './extension-contract.js'
import {HISTORY_FORMAT_VERSION, type HistoryEvent} from './history.js'
import type {StepRunner} from './ports.js'
import {
  DEFAULT_INIT_TIMEOUT_SECONDS,
  probeTimeoutMs,
  verifyExtension,
  type VerifyDeps,
  type VerifyResult,
} from './verify-extension.js'

/** The Connect calls deploy needs (implemented by adapters/connect/client.ts). */
export interface DeployConnect {
  currentUser(): Promise<{guid: string; username: string; user_role: string}>
  serverVersion(): Promise<string | undefined>
  getContent(guid: string): Promise<{
    guid: string
    app_mode?: string | null
    bundle_id?: string | null
    locked?: boolean | null
    content_url?: string | null
    dashboard_url?: string | null
    /** Seconds Connect gives a process to answer before killing it; null: the server's default. */
    init_timeout?: number | null
  }>
  /** The server's default start limit for an app mode (server_settings/scheduler), undefined when unreadable. */
  defaultInitTimeout?(appMode: string): Promise<number | undefined>
  createContent(name: string, title?: string): Promise<{guid: string}>
  updateContent(guid: string, patch: Record<string, unknown>): Promise<unknown>
  setEnvironment(guid: string, vars: Array<{name: string; value: string | null}>): Promise<void>
  uploadBundle(guid: string, archive: Buffer): Promise<{id: string}>
  deploy(guid: string, bundleId: string, activate?: boolean): Promise<string>
  getTask(
    taskId: string,
    first: number,
    waitSeconds: number,
  ): Promise<{output: string[]; last: number; finished: boolean; code: number; error?: string | null}>
  setVanity(guid: string, path: string): Promise<string>
  setOAuthIntegrations(guid: string, ids: string[]): Promise<void>
  /** The tag `fleet list` also recognises deployments by (only administrators create tags). */
  findTag?(name: string): Promise<{id: string} | undefined>
  tagContent?(guid: string, tagId: string): Promise<void>
}

export interface DeployBundle {
  info: BundleInfo
  manifest: ConnectManifest
  files: string[]
  archive(): Promise<Buffer>
}

export interface DeploymentRecord {
  server: string
  guid: string
  bundleId: string
  mlflowVersion: string
  deployedAt: string
}

export interface DeployDeps {
  connect: DeployConnect
  probe: VerifyDeps
  readBundle(dir: string): Promise<DeployBundle>
  readRecord(dir: string, server: string): Promise<DeploymentRecord | undefined>
  writeRecord(dir: string, record: DeploymentRecord): Promise<void>
  opsToken(server: string, guid: string): Promise<string | undefined>
  saveOpsToken(server: string, guid: string, token: string): Promise<void>
  newToken(): string
  appendHistory(event: HistoryEvent): Promise<void>
  now(): number
  sleep(ms: number): Promise<void>
}

export interface DeployOptions {
  dir: string
  server: string
  apiKey: string
  createNew: boolean
  name?: string
  title?: string
  guid?: string
  env: EnvVar[]
  vanity?: string
  oauthIntegrations: string[]
  timeoutMs: number
  dryRun: boolean
  /** Draft deploys: auto (Connect >= 2025.06 that shows its version), on, off. */
  drafts?: DraftsPolicy
  /**
   * false: an activated bundle that fails verification stays active, for a caller that must put data back before the
   * previous bundle can serve it (upgrade apply: the new bundle may have migrated the schema past what the previous
   * one accepts). Default true: the previous bundle is re-activated.
   */
  reactivatePrevious?: boolean
  /** Told after each step that changes what Connect holds (upgrade apply records them), before the next starts. */
  reached?: (
    step: 'bundle-uploaded' | 'draft-deployed' | 'draft-verified' | 'activated' | 'verified',
    bundleId: string,
  ) => Promise<void>
}

export type DraftsPolicy = 'auto' | 'on' | 'off'

export interface DeployPlan {
  target: {guid?: string; create?: {name: string; title?: string}}
  files: string[]
  settings: Record<string, unknown>
  envNames: string[]
  vanity?: string
  oauthIntegrations: string[]
  mlflowVersion: string
}

export interface DeployResult {
  dryRun: boolean
  plan: DeployPlan
  guid?: string
  bundleId?: string
  previousBundleId?: string | null
  user?: string
  contentUrl?: string
  dashboardUrl?: string
  logsUrl?: string
  verification?: VerifyResult
  draft?: boolean
  warnings?: string[]
}

/** Drafts (`activate: false`) from Connect 2025.06. */
const DRAFTS_FROM = [2025, 6, 0] as const
const OPS_TOKEN_ENV = 'MLFLOWCTL_OPS_TOKEN'

/** Reads the bundle and the target and decides what would change. Reads only. */
export async function planDeploy(deps: DeployDeps, options: DeployOptions, bundle?: DeployBundle): Promise<DeployPlan> {
  bundle ??= await deps.readBundle(options.dir)
  const record = options.createNew ? undefined : await deps.readRecord(options.dir, options.server)
  const guid = options.guid ?? record?.guid
  if (options.createNew && options.guid)
    throw new UsageError('NEW_AND_GUID', '--new creates content; it cannot be combined with --guid.')
  if (!guid && !options.createNew) {
    throw new UsageError('NO_TARGET', `No deployment of ${options.dir} to ${options.server} is recorded.`, {
      suggestions: [
        'Deploy as new content: mlflowctl deploy DIR --new --name mlflow',
        'Or redeploy to existing content: mlflowctl deploy DIR --guid GUID',
      ],
    })
  }
  if (options.createNew && !options.name)
    throw new UsageError('NAME_REQUIRED', '--new needs --name (3-64 letters, digits, - or _).')
  const settings: Record<string, unknown> = {
    min_processes: 1,
    ...(bundle.info.storage === 'local' ? {max_processes: 1} : {}),
    ...(options.title ? {title: options.title} : {}),
  }
  return {
    target: guid ? {guid} : {create: {name: options.name!, title: options.title}},
    files: [...bundle.files, 'manifest.json'],
    settings,
    envNames: [...new Set([...options.env.map((v) => v.name), OPS_TOKEN_ENV])],
    vanity: options.vanity,
    oauthIntegrations: options.oauthIntegrations,
    mlflowVersion: bundle.info.mlflowVersion,
  }
}

/**
 * Deploys the bundle safely: draft first (Connect ≥ 2025.06), MLflow-aware verification at the preview URL,
 * then activation and a second verification; on failure the previous bundle keeps serving or is re-activated.
 * Writes: content settings, env vars, bundle, the deployment record and the ops token store.
 * @throws AuthError, CheckFailedError DEPLOY_VERIFY_FAILED / CONTENT_LOCKED, ExternalError DEPLOY_TASK_FAILED / DEPLOY_TIMEOUT
 */
export async function deploy(deps: DeployDeps, options: DeployOptions, runner: StepRunner): Promise<DeployResult> {
  const bundle = await deps.readBundle(options.dir)
  const plan = await planDeploy(deps, options, bundle)
  if (options.dryRun) return {dryRun: true, plan}
  const event = (result: 'ok' | 'failed', fields: Partial<HistoryEvent>): HistoryEvent => ({
    v: HISTORY_FORMAT_VERSION,
    time: new Date(deps.now()).toISOString(),
    action: 'deploy',
    result,
    server: options.server,
    mlflowVersion: plan.mlflowVersion,
    guid: plan.target.guid,
    ...fields,
  })
  // The content's GUID once it exists, so that a failure after `--new` created it names it (a retry with --new
  // would only meet a name conflict).
  const target: {guid?: string} = {guid: plan.target.guid}
  try {
    const result = await deployUnrecorded(deps, options, plan, bundle, runner, target)
    await deps.appendHistory(
      event('ok', {
        guid: result.guid,
        user: result.user,
        bundleId: result.bundleId,
        revision: result.verification?.revision,
      }),
    )
    return result
  } catch (error) {
    await deps.appendHistory(event('failed', {guid: target.guid, message: (error as Error).message.split('\n')[0]}))
    if (plan.target.create && target.guid && error instanceof MlflowctlError)
      error.suggestions.push(
        `Content ${target.guid} was created; deploy to it again rather than creating another: mlflowctl deploy ${options.dir} --guid ${target.guid}`,
      )
    throw error
  }
}

async function deployUnrecorded(
  deps: DeployDeps,
  options: DeployOptions,
  plan: DeployPlan,
  bundle: DeployBundle,
  runner: StepRunner,
  target: {guid?: string},
): Promise<DeployResult> {
  const warnings: string[] = []
  const {user, version, drafts} = await runner.step('Check the API key and server', async () => {
    const me = await deps.connect.currentUser()
    if (!['publisher', 'administrator'].includes(me.user_role)) {
      throw new AuthError(
        'ROLE_TOO_LOW',
        `The API key belongs to ${me.username}, a ${me.user_role}; deploying needs a publisher or administrator key.`,
      )
    }
    const version = await deps.connect.serverVersion()
    return {user: me, version, drafts: draftsFor(options.drafts ?? 'auto', version)}
  })
  if (!drafts && (options.drafts ?? 'auto') === 'auto' && !version)
    warnings.push(
      'Connect hides its version, so no draft is deployed (an older server rejects the field; rsconnect assumes the same): the bundle is verified once it is active. Pass --drafts on if this server is 2025.06 or newer.',
    )
  const content = await runner.step('Resolve the content item', async () => {
    if (plan.target.create)
      return deps.connect.getContent(
        (await deps.connect.createContent(plan.target.create.name, plan.target.create.title)).guid,
      )
    const existing = await deps.connect.getContent(plan.target.guid!)
    if (existing.locked)
      throw new CheckFailedError(
        'CONTENT_LOCKED',
        `Content ${existing.guid} is locked; Connect accepts no deploys to it.`,
        {suggestions: ['Unlock it in the Connect dashboard first.']},
      )
    // Connect refuses to change a deployed item's app mode (error 48; rsconnect validate_app_mode and Publisher
    // refuse it client-side too). Refused here, before any setting or variable changes.
    if (appModeChanges(existing.app_mode, bundle.manifest.metadata.appmode))
      throw appModeChanged(existing.guid, existing.app_mode!, bundle, options.dir)
    return existing
  })
  const guid = content.guid
  target.guid = guid
  const initTimeoutSeconds =
    content.init_timeout ??
    (await deps.connect.defaultInitTimeout?.(bundle.manifest.metadata.appmode).catch(() => undefined)) ??
    DEFAULT_INIT_TIMEOUT_SECONDS
  const opsToken = (await deps.opsToken(options.server, guid)) ?? deps.newToken()
  await runner.step('Apply settings and environment variables', async () => {
    await deps.connect.updateContent(guid, plan.settings)
    await deps.connect.setEnvironment(guid, [...options.env, {name: OPS_TOKEN_ENV, value: opsToken}])
    await deps.saveOpsToken(options.server, guid, opsToken)
    if (options.oauthIntegrations.length > 0) await deps.connect.setOAuthIntegrations(guid, options.oauthIntegrations)
  })
  const urls = urlsFor(options.server, guid, content)
  const bundleId = await runner.step(
    'Upload the bundle',
    async () => (await deps.connect.uploadBundle(guid, await bundle.archive())).id,
  )
  const reached = async (step: Parameters<NonNullable<DeployOptions['reached']>>[0]) =>
    options.reached?.(step, bundleId)
  await reached('bundle-uploaded')
  const previous = content.bundle_id ?? null
  const failureHints = [`Dashboard: ${urls.dashboardUrl}`, `Logs: ${urls.logsUrl}`]
  const verifyAt = (baseUrl: string, report: (line: string) => void) =>
    verifyExtension(deps.probe, {
      baseUrl,
      apiKey: options.apiKey,
      opsToken,
      expectedMlflowVersion: bundle.info.mlflowVersion,
      initTimeoutSeconds,
      // A cold start, then the migrations the new MLflow runs: as long as a deploy task may take.
      startTimeoutMs: options.timeoutMs,
      report,
    })
  if (drafts) {
    await runner.step(`Deploy bundle ${bundleId} as a draft`, (report) =>
      waitForTask(deps, guid, bundleId, false, options.timeoutMs, report, failureHints),
    )
    await reached('draft-deployed')
    // From the GUID, as rsconnect does: a vanity path never changes what is verified.
    const preview = previewUrl(options.server, guid, bundleId)
    const draft = await runner.step('Verify the draft at its preview URL', (report) => verifyAt(preview, report))
    if (!draft.ok) {
      const keeps = previous ? `The active bundle ${previous} keeps serving.` : 'Nothing was activated.'
      if (draft.startup?.error?.code === 'DATA_DIR_MISSING') throw noDataDirectory(guid, keeps, failureHints)
      if (stillStarting(draft)) throw startTimeout(draft, 'the draft', keeps, options.timeoutMs, failureHints)
      // Only the preview root is documented to reach a draft. When Connect answers a
      // sub-path with its own 404 (the extension always serves /health), verify the root alone now and
      // everything right after activation, with the usual rollback when that fails.
      const root =
        draft.checks.find((check) => check.id === 'health')?.status === 404
          ? await settledRoot(deps, preview, options.apiKey, options.timeoutMs, probeTimeoutMs(initTimeoutSeconds))
          : undefined
      if (!root || root.status === 0 || root.status >= 500)
        throw verifyFailure(
          draft,
          'the draft',
          previous ? `The active bundle ${previous} keeps serving.` : 'Nothing was activated.',
          failureHints,
        )
      warnings.push(
        `Connect does not route the draft preview's sub-paths (${preview}health answered 404): only the preview root was verified (HTTP ${root.status}); the full verification ran after activation.`,
      )
    }
    await reached('draft-verified')
  }
  await runner.step(`Activate bundle ${bundleId}`, (report) =>
    waitForTask(deps, guid, bundleId, true, options.timeoutMs, report, failureHints),
  )
  await reached('activated')
  const live = await runner.step('Verify the activated bundle', (report) =>
    verifyAt(previewUrl(options.server, guid), report),
  )
  if (live.ok) await reached('verified')
  if (!live.ok) {
    const reactivate = previous && options.reactivatePrevious !== false
    if (reactivate)
      await runner.step(`Re-activate bundle ${previous}`, (report) =>
        waitForTask(deps, guid, previous, true, options.timeoutMs, report, failureHints),
      )
    const consequence = reactivate
      ? `Bundle ${previous} was re-activated.`
      : previous
        ? `Bundle ${bundleId} is still active.`
        : 'There was no earlier bundle to return to.'
    if (live.startup?.error?.code === 'DATA_DIR_MISSING') throw noDataDirectory(guid, consequence, failureHints)
    if (stillStarting(live))
      throw startTimeout(live, 'the activated bundle', consequence, options.timeoutMs, failureHints)
    throw verifyFailure(live, 'the activated bundle', consequence, failureHints)
  }
  // The record first: what follows may fail, and a retry must find the GUID.
  await deps.writeRecord(options.dir, {
    server: options.server,
    guid,
    bundleId,
    mlflowVersion: bundle.info.mlflowVersion,
    deployedAt: new Date(deps.now()).toISOString(),
  })
  await tagForFleet(deps.connect, guid)
  if (options.vanity) {
    const vanity = options.vanity
    const refused = await runner
      .step(`Set the vanity path ${vanity}`, () => deps.connect.setVanity(guid, vanity))
      .then(() => undefined)
      .catch((error: Error) => error)
    if (refused) warnings.push(vanityWarning(refused, vanity, options.dir))
  }
  return {
    dryRun: false,
    plan,
    guid,
    bundleId,
    previousBundleId: previous,
    user: user.username,
    ...urls,
    verification: live,
    draft: drafts,
    warnings,
  }
}

/** Whether to deploy a draft first: a hidden or unparseable version means no, as rsconnect decides
 * (server_supports_draft_deploy: an older server rejects the unknown `activate` field). Pure. */
export function draftsFor(policy: DraftsPolicy, version: string | undefined): boolean {
  if (policy !== 'auto') return policy === 'on'
  const parsed = parseConnectVersion(version)
  return parsed !== undefined && connectVersionAtLeast(parsed, DRAFTS_FROM)
}

/** A known app mode that differs from the bundle's ("unknown" is content that never had a bundle). Pure. */
export function appModeChanges(deployed: string | null | undefined, bundle: string): boolean {
  return Boolean(deployed) && deployed !== 'unknown' && deployed !== bundle
}

function appModeChanged(guid: string, deployed: string, bundle: DeployBundle, dir: string): UsageError {
  return new UsageError(
    'APP_MODE_CHANGED',
    `Content ${guid} was deployed as ${deployed}; this bundle is ${bundle.manifest.metadata.appmode}, and Connect cannot change a deployed item's app mode (error 48). Nothing was changed.`,
    {
      suggestions: [
        `Render the bundle as ${deployed} (operator lines kept): mlflowctl version bump ${dir} --to ${bundle.info.mlflowVersion} --app-mode ${deployed}`,
        'Or deploy it as new content: mlflowctl deploy DIR --new --name NAME',
      ],
    },
  )
}

const stillStarting = (result: VerifyResult) =>
  result.startup?.state === 'starting' || result.startup?.state === 'migrating'

/** Verification ran out of time while the extension was still starting or migrating: a timeout, not a failure. */
function startTimeout(
  result: VerifyResult,
  what: string,
  consequence: string,
  timeoutMs: number,
  hints: string[],
): ExternalError {
  return new ExternalError(
    'DEPLOY_TIMEOUT',
    `The extension of ${what} ${describeStartup(result.startup!)}, and did not finish within ${Math.round(timeoutMs / 1000)} s (--timeout). ${consequence}`,
    {
      suggestions: [
        'Raise --timeout: migrating a large store can take minutes (mlflowctl upgrade plan estimates it).',
        ...hints,
      ],
    },
  )
}

/** How often the preview root is asked again while it answers 503 (starting or migrating). */
const SETTLE_POLL_MS = 1_000

/** The preview root's answer once it is not 503 (the extension starting or migrating), or the last 503. */
async function settledRoot(
  deps: DeployDeps,
  url: string,
  apiKey: string,
  waitMs: number,
  requestMs: number,
): Promise<{status: number; body: string}> {
  const deadline = deps.now() + waitMs
  for (;;) {
    const answer = await deps.probe
      .get(url, {Authorization: `Key ${apiKey}`}, requestMs)
      .catch(() => ({status: 0, body: ''}))
    if (answer.status !== 503 || deps.now() >= deadline) return answer
    await deps.sleep(SETTLE_POLL_MS)
  }
}

/** Local storage keeps MLflow's data in the item's persistent directory, which this server does not give it. */
function noDataDirectory(guid: string, consequence: string, hints: string[]): ConfigError {
  return new ConfigError(
    'DATA_DIR_MISSING',
    `Connect gives content ${guid} no persistent data directory (CONNECT_CONTENT_DATA_DIR is not set), and local storage keeps MLflow's database and artifacts there. ${consequence}`,
    {
      suggestions: [
        'Ask a Connect administrator to enable persistent storage for this content item, then deploy again.',
        'Or keep the data outside Connect: render the bundle with custom storage (PostgreSQL or SQL Server) or cloud storage (mlflowctl init --help).',
        ...hints,
      ],
    },
  )
}

/** The content tag that marks an mlflowctl deployment for keys that may only view it (they cannot read bundles). */
export const FLEET_TAG = 'mlflowctl'

/** Best effort: tags the content when an administrator created the tag; a server without it (or a refusal) changes
 * nothing, since `fleet list` recognises the deployment by its bundle's mlflowctl.json as well. */
async function tagForFleet(connect: DeployConnect, guid: string): Promise<void> {
  if (!connect.findTag || !connect.tagContent) return
  const tag = await connect.findTag(FLEET_TAG).catch(() => undefined)
  if (tag) await connect.tagContent(guid, tag.id).catch(() => undefined)
}

/** A vanity path Connect refused: the deployment stands and is recorded; say why and how to retry. */
function vanityWarning(error: Error, vanity: string, dir: string): string {
  const why = /Connect error 51\b/.test(error.message)
    ? 'the path is taken by other content: choose another, or free it first'
    : /Connect error 52\b/.test(error.message)
      ? 'this server does not let publishers manage vanity paths (Authorization.PublishersCanManageVanities): ask an administrator'
      : error.message
  return `The deployment succeeded and is recorded, but Connect did not set the vanity path ${vanity}: ${why}. Retry it: mlflowctl deploy ${dir} --vanity ${vanity}`
}

function verifyFailure(result: VerifyResult, what: string, consequence: string, hints: string[]): CheckFailedError {
  const failed = result.checks.filter((check) => !check.ok).map((check) => check.detail)
  return new CheckFailedError(
    'DEPLOY_VERIFY_FAILED',
    `Verification of ${what} failed: ${failed.join('; ')}. ${consequence}`,
    {suggestions: hints},
  )
}

/** Starts a deploy task and follows its log until it finishes or the timeout passes. */
export async function waitForTask(
  deps: {connect: Pick<DeployConnect, 'deploy' | 'getTask'>; now(): number},
  guid: string,
  bundleId: string,
  activate: boolean,
  timeoutMs: number,
  report: (line: string) => void,
  hints: string[],
): Promise<void> {
  const taskId = await deps.connect.deploy(guid, bundleId, activate)
  const deadline = deps.now() + timeoutMs
  let first = 0
  const tail: string[] = []
  for (;;) {
    const task = await deps.connect.getTask(taskId, first, 2)
    for (const line of task.output) {
      report(line)
      tail.push(line)
      if (tail.length > 30) tail.shift()
    }
    first = task.last
    if (task.finished) {
      if (task.code !== 0 || task.error) {
        throw new ExternalError(
          'DEPLOY_TASK_FAILED',
          `Connect's deploy task for bundle ${bundleId} failed (${task.error || `code ${task.code}`}).\nTask log:\n${tail.join('\n')}`,
          {suggestions: hints},
        )
      }
      return
    }
    if (deps.now() > deadline)
      throw new ExternalError(
        'DEPLOY_TIMEOUT',
        `The deploy task for bundle ${bundleId} did not finish within ${Math.round(timeoutMs / 1000)} s.`,
        {suggestions: ['Raise --timeout, or follow the task in the dashboard.', ...hints]},
      )
  }
}

export {urlsFor} from './content-urls.js'
