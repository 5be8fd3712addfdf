/**
 * `upgrade apply`: re-plan against the live state (a saved plan must still match it), take the lock, back up
 * and verify, bump the active bundle and deploy it to the same GUID, verify, and on any failure put the data
 * back from the backup and make the previous bundle serve again. Every outcome goes into the history ledger.
 */
import {CheckFailedError, UsageError} from '../errors.js'
import type {CatalogOverlay, MigrationCatalog} from './catalog.js'
import {HISTORY_FORMAT_VERSION, type HistoryEvent} from './history.js'
import type {StepRunner} from './ports.js'
import {
  advance,
  describeInterrupted,
  INTENT_FORMAT_VERSION,
  type UpgradeIntent,
  type UpgradeStep,
} from './upgrade-intent.js'
import {fingerprintOf, planUpgrade, type LiveState, type UpgradePlan} from './upgrade-plan.js'

export interface LiveDeployment {
  state: LiveState
  /** The active bundle's files, unpacked into a scratch directory the upgrade may rewrite. */
  bundleDir: string
}

/** How the extension answers after a step: which bundle is active and what it reports. */
export interface ServingState {
  activeBundleId: string | null
  /** The ops status revision, or undefined when nothing answers. */
  revision?: string
  mlflowVersion?: string
  /** The database's tables (without alembic_*), as the ops status lists them. */
  tables?: string[]
}

export interface ApplyDeps {
  catalog: MigrationCatalog
  overlay: CatalogOverlay
  readLive(guid: string): Promise<LiveDeployment>
  /** Held for the whole apply; a second apply on the same deployment is refused. */
  lock(guid: string): Promise<() => Promise<void>>
  /** Creates a backup of the deployment's data and verifies it; returns what a restore needs. */
  backup(live: LiveState): Promise<{id: string; path: string; revision: string | null}>
  /** Bumps the bundle directory to the target and deploys it (draft, verify, activate, verify), telling `reached`
   * after each of those steps. Returns the new bundle. */
  bumpAndDeploy(
    bundleDir: string,
    targetVersion: string,
    guid: string,
    reached: (step: DeployStep, bundleId: string) => Promise<void>,
  ): Promise<{bundleId: string; revision?: string}>
  serving(guid: string): Promise<ServingState>
  /** Puts the backup's data back into the deployment (or its database), replacing what is there. `hold`: the
   * running extension is the new bundle; it swaps the data in unmigrated and stops serving until replaced.
   * Returns the safety backup taken of what was replaced (it holds writes made during the attempt). */
  restore(backup: {id: string; path: string}, live: LiveState, hold?: boolean): Promise<{safetyBackup?: string}>
  activate(guid: string, bundleId: string): Promise<void>
  /** The verification deploy runs: /health, /version, the REST API and the schema revision. */
  verify(guid: string, mlflowVersion: string): Promise<{ok: boolean; failures: string[]}>
  confirm(question: string): Promise<boolean>
  appendHistory(event: HistoryEvent): Promise<void>
  /** The backup repository as it was given (recorded so that resume and abort use the same one). */
  repo?: string
  /** The intent record of the deployment's upgrade, kept on this machine until the upgrade ends either way. */
  intents: {
    read(guid: string): Promise<UpgradeIntent | undefined>
    write(intent: UpgradeIntent): Promise<void>
    clear(guid: string): Promise<void>
  }
  /** Told after each step is recorded (a test stops the process there). */
  reached(step: UpgradeStep): void
  now(): Date
}

/** The steps of a deploy an upgrade records. */
export type DeployStep = 'bundle-uploaded' | 'draft-deployed' | 'draft-verified' | 'activated' | 'verified'

/** Writes each step of one upgrade into its intent record, durably, before the next step starts. */
export class IntentRecorder {
  constructor(
    private readonly deps: Pick<ApplyDeps, 'intents' | 'reached' | 'now'>,
    public intent: UpgradeIntent,
  ) {}

  async step(step: UpgradeStep, extra: Partial<UpgradeIntent> = {}): Promise<void> {
    this.intent = advance(this.intent, step, this.deps.now(), extra)
    await this.deps.intents.write(this.intent)
    this.deps.reached(step)
  }

  /** The upgrade ended (done, rolled back, or forgotten): no record is left to resume. */
  async end(): Promise<void> {
    await this.deps.intents.clear(this.intent.guid)
  }
}

export interface ApplyOptions {
  server: string
  guid: string
  to?: string
  savedPlan?: UpgradePlan
}

export interface ApplyResult {
  outcome: 'upgraded' | 'nothing-to-do'
  plan: UpgradePlan
  backupId?: string
  bundleId?: string
  previousBundleId: string
  revision?: string
}

/** Checks a saved plan still describes the deployment. @throws CheckFailedError PLAN_STALE, UsageError PLAN_OTHER_TARGET */
export function checkSavedPlan(saved: UpgradePlan, state: LiveState): void {
  if (saved.guid !== state.guid || saved.server.replace(/\/+$/, '') !== state.server.replace(/\/+$/, '')) {
    throw new UsageError(
      'PLAN_OTHER_TARGET',
      `The plan is for ${saved.guid} on ${saved.server}, not ${state.guid} on ${state.server}.`,
    )
  }
  const live = fingerprintOf(state, saved.to.mlflowVersion)
  if (live !== saved.fingerprint) {
    throw new CheckFailedError(
      'PLAN_STALE',
      `The deployment changed since the plan was made (${saved.createdAt}): it now runs bundle ${state.bundleId}, MLflow ${state.status.mlflowVersion}, schema ${state.status.dbRevision ?? 'none'}, ${state.status.storageMode} storage (${state.status.dialect}).`,
      {
        suggestions: [
          `Make a new plan: mlflowctl upgrade plan --guid ${state.guid} --to ${saved.to.mlflowVersion} --plan-file FILE`,
        ],
      },
    )
  }
}

/**
 * Runs the upgrade. On a failure after the backup, the data is restored and the previous bundle made active,
 * then the original error is thrown with what the rollback did.
 * @throws CheckFailedError PLAN_STALE / UPGRADE_BLOCKED / UPGRADE_ROLLED_BACK / ROLLBACK_FAILED, UsageError DECLINED
 */
export async function applyUpgrade(deps: ApplyDeps, options: ApplyOptions, runner: StepRunner): Promise<ApplyResult> {
  // Locked before the deployment is read: a second apply that finishes meanwhile cannot leave this one planning
  // from a bundle that is no longer active. (The lock is per machine: it lives in the data dir.)
  const release = await deps.lock(options.guid)
  try {
    return await applyLocked(deps, options, runner)
  } finally {
    await release()
  }
}

/** Refuses while an earlier upgrade of the deployment is unfinished (its intent record is here). */
async function refuseIfInterrupted(deps: ApplyDeps, guid: string): Promise<void> {
  const intent = await deps.intents.read(guid)
  if (!intent) return
  const now = await deps.serving(guid).catch((): ServingState => ({activeBundleId: null}))
  const interrupted = describeInterrupted(intent, now)
  throw new CheckFailedError('UPGRADE_IN_PROGRESS', interrupted.summary, {suggestions: interrupted.next})
}

/** Applies an upgrade under the lock (also the start of `upgrade resume` when nothing had changed yet). */
export async function applyLocked(deps: ApplyDeps, options: ApplyOptions, runner: StepRunner): Promise<ApplyResult> {
  await refuseIfInterrupted(deps, options.guid)
  const live = await runner.step('Read the deployment (bundle, version, schema)', () => deps.readLive(options.guid))
  if (options.savedPlan) checkSavedPlan(options.savedPlan, live.state)
  const target = options.savedPlan?.to.mlflowVersion ?? options.to
  if (!target) throw new UsageError('TARGET_REQUIRED', 'Pass --to VERSION or --plan-file FILE.')
  const plan = planUpgrade(deps.catalog, deps.overlay, live.state, target, deps.now())
  const previous = live.state.bundleId
  if (plan.blockers.length > 0) {
    throw new CheckFailedError(
      'UPGRADE_BLOCKED',
      `The upgrade to MLflow ${target} is blocked: ${plan.blockers.map((b) => `${b.code}: ${b.message}`).join(' ')}`,
      {suggestions: [`See mlflowctl upgrade plan --guid ${options.guid} --to ${target}.`]},
    )
  }
  if (plan.strategy === 'none')
    return {
      outcome: 'nothing-to-do',
      plan,
      previousBundleId: previous,
      revision: live.state.status.dbRevision ?? undefined,
    }
  const pending = plan.schema.pending.length
  if (
    !(await deps.confirm(
      `Upgrade ${options.guid} from MLflow ${plan.from.mlflowVersion} to ${target} (${pending} schema migrations, strategy ${plan.strategy})?`,
    ))
  )
    throw new UsageError('DECLINED', 'Upgrade declined; nothing changed.')
  const event = upgradeEvent(deps, options.server, options.guid, target)
  const at = deps.now().toISOString()
  const recorder = new IntentRecorder(deps, {
    v: INTENT_FORMAT_VERSION,
    server: options.server,
    guid: options.guid,
    startedAt: at,
    updatedAt: at,
    step: 'started',
    from: {bundleId: previous, mlflowVersion: plan.from.mlflowVersion, revision: live.state.status.dbRevision},
    to: {mlflowVersion: target, head: plan.to.head},
    state: live.state,
    repo: deps.repo,
  })
  await deps.intents.write(recorder.intent)
  // Nothing has changed until the backup is taken: a backup that fails leaves no record to resume.
  const backup = await runner
    .step('Back up the data and verify the backup', () => deps.backup(live.state))
    .catch(async (error: unknown) => {
      await recorder.end()
      throw error
    })
  await recorder.step('backup-taken', {backup})
  let deployed: {bundleId: string; revision?: string}
  try {
    deployed = await runner.step(
      `Deploy MLflow ${target} to ${options.guid}${pending ? ` (${pending} migrations run once at startup)` : ''}`,
      () =>
        deps.bumpAndDeploy(live.bundleDir, target, options.guid, (step, bundleId) =>
          recorder.step(step, {newBundleId: bundleId}),
        ),
    )
  } catch (error) {
    const cause = (error as Error).message.split('\n')[0]
    let rollback: RollbackOutcome
    try {
      await recorder.step('rollback-started', {cause})
      rollback = await rollBack(deps, recorder, runner)
    } catch (rollbackError) {
      await deps.appendHistory(
        event('failed', {
          bundleId: previous,
          message: `The upgrade failed (${cause}) and so did the rollback (${(rollbackError as Error).message.split('\n')[0]}); backup ${backup.id}`,
        }),
      )
      throw rollbackError
    }
    const message = `The upgrade to MLflow ${target} failed: ${cause} ${rollback.sentence}`
    await deps.appendHistory(
      event('failed', {
        bundleId: previous,
        message: `${message} (backup ${backup.id}${rollback.safetyBackup ? `, safety backup ${rollback.safetyBackup}` : ''})`,
      }),
    )
    await recorder.end()
    const safety = rollback.safetyBackup
      ? [
          `Safety backup ${rollback.safetyBackup} holds the data as it was when the rollback replaced it, writes made during the attempt included.`,
        ]
      : []
    throw new CheckFailedError('UPGRADE_ROLLED_BACK', message, {
      suggestions: [
        `Backup ${backup.id} holds the pre-upgrade data.`,
        ...safety,
        ...((error as {suggestions?: string[]}).suggestions ?? []),
      ],
    })
  }
  await deps.appendHistory(
    event('ok', {
      bundleId: deployed.bundleId,
      revision: deployed.revision,
      message: `from MLflow ${plan.from.mlflowVersion} (bundle ${previous}); backup ${backup.id}`,
    }),
  )
  await recorder.end()
  return {
    outcome: 'upgraded',
    plan,
    backupId: backup.id,
    bundleId: deployed.bundleId,
    previousBundleId: previous,
    revision: deployed.revision,
  }
}

export interface RollbackOutcome {
  /** What was done, as a sentence for the error and the ledger. */
  sentence: string
  /** The backup the restore took of the data it replaced, when it replaced any. */
  safetyBackup?: string
}

const sameTables = (a: string[] | undefined, b: string[] | undefined) =>
  Boolean(a && b) && [...a!].sort().join() === [...b!].sort().join()

/**
 * Puts the pre-upgrade data back and the previous bundle in front. The data is restored only when it changed:
 * the schema moved, tables appeared (SQLite commits DDL as it goes, so a migration that failed part-way leaves
 * some), or the deployment cannot tell; otherwise writes made during the attempt are kept. A restore that an
 * interrupted rollback finished is not repeated. The restore goes to whatever serves: the previous bundle when a
 * draft failed (its head is the backup's revision), the activated new bundle held (local storage), or the external
 * database directly. A previous bundle that does not answer (it refuses the migrated schema) hands over to the new
 * bundle first, which takes the restore held. Each step goes into the intent record. Returns what was done.
 * @throws CheckFailedError ROLLBACK_FAILED when the previous state could not be re-established.
 */
export async function rollBack(
  deps: ApplyDeps,
  recorder: IntentRecorder,
  runner: StepRunner,
): Promise<RollbackOutcome> {
  const {state, backup, newBundleId, guid} = recorder.intent
  if (!backup) throw new Error('rollBack: the intent record has no backup')
  const previous = state.bundleId
  const version = state.status.mlflowVersion
  const external = state.status.storageMode !== 'local'
  const restoredAlready = recorder.intent.step === 'restore-finished' || recorder.intent.step === 'previous-reactivated'
  try {
    const servingNow = () => deps.serving(guid).catch((): ServingState => ({activeBundleId: null}))
    let now = await servingNow()
    if (now.activeBundleId === previous && now.revision === undefined && newBundleId && !external) {
      // Nothing answers for the previous bundle: it refuses a schema migrated past it, and a refusing process takes
      // no restore. The new bundle accepts that schema, takes the data held, and hands back to the previous one.
      await runner.step(
        `Activate bundle ${newBundleId}, which accepts the migrated schema, to restore through it`,
        () => deps.activate(guid, newBundleId),
      )
      await recorder.step('activated')
      now = await servingNow()
    }
    const changed =
      !restoredAlready &&
      (now.revision === undefined || now.revision !== backup.revision || !sameTables(now.tables, state.status.tables))
    let safetyBackup: string | undefined
    const restore = async (hold?: boolean) => {
      await recorder.step('restore-started')
      safetyBackup = (await deps.restore(backup, state, hold)).safetyBackup
      await recorder.step('restore-finished')
    }
    let how = changed
      ? `backup ${backup.id} restored`
      : restoredAlready
        ? `backup ${backup.id} restored (by the interrupted rollback)`
        : `the data was unchanged (schema ${backup.revision}), nothing restored,`
    if (now.activeBundleId !== previous && external) {
      // External database: restore straight into it, then the previous bundle starts against its own schema.
      if (changed) await runner.step(`Restore backup ${backup.id} into the database`, () => restore())
      await runner.step(`Re-activate bundle ${previous}`, () => deps.activate(guid, previous))
    } else if (now.activeBundleId !== previous) {
      // The new bundle was activated and serves: it takes the data at the old revision and holds (503) until the
      // previous bundle, which matches that data again, replaces it.
      if (changed) {
        await runner.step(`Restore backup ${backup.id} into the running bundle ${now.activeBundleId} (held)`, () =>
          restore(true),
        )
        how = `backup ${backup.id} restored into the activated bundle ${now.activeBundleId} (held)`
      }
      await runner.step(`Re-activate bundle ${previous}`, () => deps.activate(guid, previous))
    } else if (changed) {
      await runner.step(`Restore backup ${backup.id} (the schema is at ${now.revision ?? 'an unknown revision'})`, () =>
        restore(),
      )
      // A previous bundle that did not answer refused the schema at its start: it starts again on its own.
      if (now.revision === undefined)
        await runner.step(`Restart bundle ${previous}`, () => deps.activate(guid, previous))
    }
    await recorder.step('previous-reactivated')
    const check = await runner.step(`Verify bundle ${previous} (MLflow ${version})`, () => deps.verify(guid, version))
    if (!check.ok)
      throw new CheckFailedError(
        'ROLLBACK_VERIFY_FAILED',
        `the previous bundle fails verification: ${check.failures.join('; ')}`,
      )
    return {sentence: `Rolled back: ${how} and bundle ${previous} (MLflow ${version}) serving.`, safetyBackup}
  } catch (error) {
    const target = external ? 'postgresql://… (the database)' : `connect:${guid}`
    throw new CheckFailedError(
      'ROLLBACK_FAILED',
      `The upgrade failed and so did the rollback: ${(error as Error).message.split('\n')[0]}`,
      {
        suggestions: [
          `Finish the rollback: mlflowctl upgrade abort --guid ${guid}`,
          `Or restore by hand: mlflowctl backup restore ${backup.path} --to ${target} --force --yes`,
          `Then: mlflowctl rollback --guid ${guid} --to ${previous} --yes`,
        ],
      },
    )
  }
}

/** The history event of an upgrade of one deployment to `target`. */
export const upgradeEvent =
  (deps: Pick<ApplyDeps, 'now'>, server: string, guid: string, target: string) =>
  (result: 'ok' | 'failed', fields: Partial<HistoryEvent>): HistoryEvent => ({
    v: HISTORY_FORMAT_VERSION,
    time: deps.now().toISOString(),
    action: 'upgrade',
    result,
    server,
    guid,
    mlflowVersion: target,
    ...fields,
  })
