import {urlsFor} from './content-urls.js'
import {AuthError, CheckFailedError, ExternalError, UsageError} from '../errors.js'
import {connectVersionAtLeast, parseConnectVersion} from './connect-version.js'
import type {BundleInfo, ConnectManifest} from './bundle.js'
import type {EnvVar} from './env-vars.js'
import {HISTORY_FORMAT_VERSION, type HistoryEvent} from './history.js'
import type {StepRunner} from './ports.js'
import {verifyExtension, type VerifyDeps, type VerifyResult} from './verify-extension.js'

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
  }>
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

/** Drafts (`activate: false`) from Connect 2025.06 (connect-api.md §4.3). */
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
  try {
    const result = await deployUnrecorded(deps, options, plan, bundle, runner)
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
    await deps.appendHistory(event('failed', {message: (error as Error).message.split('\n')[0]}))
    throw error
  }
}

async function deployUnrecorded(
  deps: DeployDeps,
  options: DeployOptions,
  plan: DeployPlan,
  bundle: DeployBundle,
  runner: StepRunner,
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
    // refuse it client-side too: connect-api.md §10). Refused here, before any setting or variable changes.
    if (appModeChanges(existing.app_mode, bundle.manifest.metadata.appmode))
      throw appModeChanged(existing.guid, existing.app_mode!, bundle, options.dir)
    return existing
  })
  const guid = content.guid
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
  const previous = content.bundle_id ?? null
  const failureHints = [`Dashboard: ${urls.dashboardUrl}`, `Logs: ${urls.logsUrl}`]
  const verifyAt = (baseUrl: string) =>
    verifyExtension(deps.probe, {
      baseUrl,
      apiKey: options.apiKey,
      opsToken,
      expectedMlflowVersion: bundle.info.mlflowVersion,
    })
  if (drafts) {
    await runner.step(`Deploy bundle ${bundleId} as a draft`, (report) =>
      waitForTask(deps, guid, bundleId, false, options.timeoutMs, report, failureHints),
    )
    const preview = `${urls.contentUrl}_bundle${bundleId}/`
    const draft = await runner.step('Verify the draft at its preview URL', async () => verifyAt(preview))
    if (!draft.ok) {
      // Only the preview root is documented to reach a draft (connect-api.md §1, §10). When Connect answers a
      // sub-path with its own 404 (the extension always serves /health), verify the root alone now and
      // everything right after activation, with the usual rollback when that fails.
      const root =
        draft.checks.find((check) => check.id === 'health')?.status === 404
          ? await deps.probe.get(preview, {Authorization: `Key ${options.apiKey}`}).catch(() => ({status: 0, body: ''}))
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
  }
  await runner.step(`Activate bundle ${bundleId}`, (report) =>
    waitForTask(deps, guid, bundleId, true, options.timeoutMs, report, failureHints),
  )
  const live = await runner.step('Verify the activated bundle', async () => verifyAt(urls.contentUrl))
  if (!live.ok) {
    if (previous)
      await runner.step(`Re-activate bundle ${previous}`, (report) =>
        waitForTask(deps, guid, previous, true, options.timeoutMs, report, failureHints),
      )
    throw verifyFailure(
      live,
      'the activated bundle',
      previous ? `Bundle ${previous} was re-activated.` : 'There was no earlier bundle to return to.',
      failureHints,
    )
  }
  if (options.vanity)
    await runner.step(`Set the vanity path ${options.vanity}`, () => deps.connect.setVanity(guid, options.vanity!))
  await deps.writeRecord(options.dir, {
    server: options.server,
    guid,
    bundleId,
    mlflowVersion: bundle.info.mlflowVersion,
    deployedAt: new Date(deps.now()).toISOString(),
  })
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
