import {CheckFailedError, ConfigError, ExternalError, UsageError} from '../errors.js'
import {additiveAhead, type MigrationCatalog} from './catalog.js'
import {urlsFor, waitForTask, type DeployConnect} from './deploy.js'
import {HISTORY_FORMAT_VERSION, verifiedRevisionOf, type HistoryEvent} from './history.js'
import type {StepRunner} from './ports.js'
import {readSchema, verifyExtension, type VerifyDeps, type VerifyResult} from './verify-extension.js'

/** The content variable that lets an older extension serve one newer, additive schema revision (schema_ahead.py). */
export const SCHEMA_AHEAD_ENV = 'MLFLOWCTL_SCHEMA_AHEAD_ALLOWED'

export interface RollbackDeps {
  catalog: MigrationCatalog
  connect: Pick<DeployConnect, 'getContent' | 'deploy' | 'getTask' | 'currentUser' | 'setEnvironment'> & {
    listBundles(guid: string): Promise<Array<{id: string; created_time?: string}>>
  }
  probe: VerifyDeps
  opsToken(server: string, guid: string): Promise<string | undefined>
  history(): Promise<HistoryEvent[]>
  appendHistory(event: HistoryEvent): Promise<void>
  /** Asks the operator; the command answers true for --yes and refuses when it cannot prompt. */
  confirm(question: string): Promise<boolean>
  now(): number
  sleep(ms: number): Promise<void>
}

export interface RollbackOptions {
  server: string
  apiKey: string
  guid: string
  to?: string
  timeoutMs: number
}

export interface RollbackResult {
  guid: string
  fromBundleId: string
  toBundleId: string
  revision: string
  mlflowVersion?: string
  /** Set when the bundle now runs on a schema ahead of its own head, by migrations that only add (no restore). */
  instant?: {head: string; revision: string; migrations: number}
  verification: VerifyResult
  contentUrl: string
  dashboardUrl: string
  logsUrl: string
}

const byAge = (a: {id: string; created_time?: string}, b: {id: string; created_time?: string}) =>
  (a.created_time ?? '').localeCompare(b.created_time ?? '') || Number(a.id) - Number(b.id)

/**
 * Activates an earlier bundle, but only when the database schema is exactly what that bundle's MLflow
 * was verified against (from the history ledger); otherwise it refuses and points at a backup restore.
 * @throws CheckFailedError ROLLBACK_SCHEMA_MOVED / ROLLBACK_UNVERIFIABLE, UsageError, ExternalError
 */
export async function rollback(
  deps: RollbackDeps,
  options: RollbackOptions,
  runner: StepRunner,
): Promise<RollbackResult> {
  const {guid} = options
  const content = await deps.connect.getContent(guid)
  const urls = urlsFor(options.server, guid, content)
  const current = content.bundle_id
  if (!current) throw new CheckFailedError('NOTHING_TO_ROLL_BACK', `Content ${guid} has no active bundle.`)
  const bundles = (await deps.connect.listBundles(guid)).sort(byAge)
  const target = options.to ?? bundles[bundles.findIndex((b) => b.id === current) - 1]?.id
  if (!target || !bundles.some((b) => b.id === target)) {
    throw new ConfigError(
      'BUNDLE_NOT_FOUND',
      options.to
        ? `Content ${guid} has no bundle ${options.to}.`
        : `Content ${guid} has no bundle older than the active one (${current}).`,
      {
        suggestions: [`Bundles: ${bundles.map((b) => b.id).join(', ') || 'none'}.`],
      },
    )
  }
  if (target === current) throw new UsageError('ALREADY_ACTIVE', `Bundle ${target} is already active.`)
  const opsToken = await deps.opsToken(options.server, guid)
  if (!opsToken)
    throw new CheckFailedError(
      'ROLLBACK_UNVERIFIABLE',
      `No ops token for ${guid} is stored here, so the schema revision cannot be read.`,
      {suggestions: ['Redeploy once from this machine with mlflowctl deploy, which sets one.']},
    )
  const live = await readSchema(deps.probe, {baseUrl: urls.contentUrl, apiKey: options.apiKey, opsToken})
  if (!live.revision)
    throw new ExternalError(
      'STATUS_UNAVAILABLE',
      `The running extension did not report its schema revision (${live.check.detail}).`,
      {suggestions: [`Logs: ${urls.logsUrl}`]},
    )
  const targetSchema = verifiedRevisionOf(await deps.history(), guid, target)
  if (!targetSchema) {
    throw new CheckFailedError(
      'ROLLBACK_UNVERIFIABLE',
      `No verified deploy of bundle ${target} is in the history, so it is unknown which schema its MLflow expects; the database is at ${live.revision}.`,
      {
        suggestions: ['Restore a backup taken with that bundle instead (mlflowctl backup restore).'],
      },
    )
  }
  let instant: RollbackResult['instant']
  if (targetSchema.revision !== live.revision) {
    // Migrations that only add leave a schema the older MLflow runs on: it is re-activated as it is.
    const ahead = additiveAhead(deps.catalog, targetSchema.revision, live.revision)
    if (!ahead.ok)
      throw new CheckFailedError(
        'ROLLBACK_SCHEMA_MOVED',
        `The database schema moved past bundle ${target}: it is at ${live.revision}, and bundle ${target} (MLflow ${targetSchema.mlflowVersion ?? '?'}) was verified at ${targetSchema.revision}; ${ahead.reason}. Its MLflow would refuse to start.`,
        {
          suggestions: ['Restore the backup taken before the upgrade (mlflowctl backup restore), then roll back.'],
        },
      )
    instant = {head: targetSchema.revision, revision: live.revision, migrations: ahead.revisions.length}
  }
  if (
    !(await deps.confirm(
      `Activate bundle ${target} (MLflow ${targetSchema.mlflowVersion ?? '?'}) instead of ${current} on ${guid}${instant ? `, on the newer schema ${instant.revision} (${instant.migrations} migrations that only add; no restore)` : ''}?`,
    ))
  )
    throw new UsageError('DECLINED', 'Rollback declined.')
  const event = (result: 'ok' | 'failed', extra: Partial<HistoryEvent>): HistoryEvent => ({
    v: HISTORY_FORMAT_VERSION,
    time: new Date(deps.now()).toISOString(),
    action: 'rollback',
    result,
    server: options.server,
    guid,
    bundleId: target,
    mlflowVersion: targetSchema.mlflowVersion,
    ...extra,
  })
  try {
    if (instant) {
      const allowed = instant.revision
      await runner.step(`Let bundle ${target} serve schema ${allowed} (${SCHEMA_AHEAD_ENV})`, () =>
        deps.connect.setEnvironment(guid, [{name: SCHEMA_AHEAD_ENV, value: allowed}]),
      )
    }
    await runner.step(`Activate bundle ${target}`, (report) =>
      waitForTask(deps, guid, target, true, options.timeoutMs, report, [`Logs: ${urls.logsUrl}`]),
    )
    const verification = await runner.step('Verify the extension', (report) =>
      verifyExtension(deps.probe, {
        baseUrl: urls.contentUrl,
        apiKey: options.apiKey,
        opsToken,
        expectedMlflowVersion: targetSchema.mlflowVersion ?? '',
        aheadAllowed: instant?.revision,
        // The process starts (and may migrate) after activation: as long as the task may take.
        startTimeoutMs: options.timeoutMs,
        report,
      }),
    )
    if (!verification.checks.filter((c) => c.id !== 'version' || targetSchema.mlflowVersion).every((c) => c.ok)) {
      throw new CheckFailedError(
        'ROLLBACK_VERIFY_FAILED',
        `Bundle ${target} is active but failed verification: ${verification.checks
          .filter((c) => !c.ok)
          .map((c) => c.detail)
          .join('; ')}.`,
        {suggestions: [`Logs: ${urls.logsUrl}`]},
      )
    }
    await deps.appendHistory(
      event('ok', {
        revision: verification.revision,
        ...(instant
          ? {
              message: `instant: on schema ${instant.revision}, ${instant.migrations} additive migrations ahead of ${instant.head}`,
            }
          : {}),
      }),
    )
    return {
      guid,
      fromBundleId: current,
      toBundleId: target,
      revision: verification.revision!,
      mlflowVersion: targetSchema.mlflowVersion,
      ...(instant ? {instant} : {}),
      verification,
      ...urls,
    }
  } catch (error) {
    await deps.appendHistory(event('failed', {message: (error as Error).message.split('\n')[0]}))
    throw error
  }
}
