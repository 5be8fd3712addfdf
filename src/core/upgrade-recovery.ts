/**
 * `upgrade status|resume|abort`: an upgrade whose process died leaves its intent record; these read it with what the
 * deployment serves now, then say where it stopped, finish it, or undo it. Either way the end state is one of two:
 * the previous bundle on the data as it was before (restored from the upgrade's backup when the schema had moved),
 * or the new bundle on the migrated data, verified.
 */
import {CheckFailedError, UsageError} from '../errors.js'
import type {StepRunner} from './ports.js'
import {
  applyLocked,
  IntentRecorder,
  rollBack,
  upgradeEvent,
  type ApplyDeps,
  type ServingState,
} from './upgrade-apply.js'
import {describeInterrupted, type InterruptedUpgrade, type UpgradeStep} from './upgrade-intent.js'

export interface UpgradeStatusResult {
  guid: string
  inProgress: boolean
  interrupted?: InterruptedUpgrade
}

export interface RecoveryResult {
  guid: string
  /** upgraded: the new bundle serves the migrated data; rolled-back: the previous bundle serves the old data;
   * forgotten: the record was dropped and nothing was changed; none: no upgrade was unfinished. */
  outcome: 'upgraded' | 'rolled-back' | 'forgotten' | 'none'
  /** The step the interrupted upgrade had recorded last. */
  stoppedAfter?: UpgradeStep
  activeBundleId?: string
  mlflowVersion?: string
  backupId?: string
  safetyBackup?: string
  message: string
}

const serving = (deps: ApplyDeps, guid: string) =>
  deps.serving(guid).catch((): ServingState => ({activeBundleId: null}))

/** Where an unfinished upgrade of the deployment stopped; reads only. */
export async function upgradeStatus(deps: ApplyDeps, guid: string): Promise<UpgradeStatusResult> {
  const intent = await deps.intents.read(guid)
  if (!intent) return {guid, inProgress: false}
  return {guid, inProgress: true, interrupted: describeInterrupted(intent, await serving(deps, guid))}
}

async function locked<T>(deps: ApplyDeps, guid: string, work: () => Promise<T>): Promise<T> {
  const release = await deps.lock(guid)
  try {
    return await work()
  } finally {
    await release()
  }
}

/**
 * Finishes an interrupted upgrade. When nothing had changed yet (the previous bundle still serves its own schema),
 * it starts the upgrade again from a new backup, since users may have written meanwhile. When the schema moved or
 * the new bundle is active, it activates the new bundle, verifies it, and records the upgrade; a verification that
 * fails rolls back as `upgrade apply` does.
 * @throws CheckFailedError UPGRADE_NOT_RESUMABLE (a rollback began, or another bundle is active), UPGRADE_ROLLED_BACK
 */
export async function resumeUpgrade(deps: ApplyDeps, guid: string, runner: StepRunner): Promise<RecoveryResult> {
  return locked(deps, guid, async () => {
    const intent = await deps.intents.read(guid)
    if (!intent) return {guid, outcome: 'none', message: `No upgrade of ${guid} is unfinished on this machine.`}
    const now = await serving(deps, guid)
    const interrupted = describeInterrupted(intent, now)
    if (!interrupted.resumable)
      throw new CheckFailedError('UPGRADE_NOT_RESUMABLE', interrupted.summary, {suggestions: interrupted.next})
    const stoppedAfter = intent.step
    const recorder = new IntentRecorder(deps, intent)
    if (interrupted.state === 'previous-serving' || !intent.newBundleId) {
      await recorder.end()
      const applied = await applyLocked(deps, {server: intent.server, guid, to: intent.to.mlflowVersion}, runner)
      return {
        guid,
        outcome: 'upgraded',
        stoppedAfter,
        activeBundleId: applied.bundleId ?? applied.previousBundleId,
        mlflowVersion: intent.to.mlflowVersion,
        backupId: applied.backupId,
        message: `Nothing had changed after "${stoppedAfter}": the upgrade ran again from a new backup (${applied.backupId ?? 'none needed'}).`,
      }
    }
    const newBundleId = intent.newBundleId
    const event = upgradeEvent(deps, intent.server, guid, intent.to.mlflowVersion)
    const failed = async (cause: string) => {
      await recorder.step('rollback-started', {cause})
      const rollback = await rollBack(deps, recorder, runner)
      const message = `The resumed upgrade to MLflow ${intent.to.mlflowVersion} failed: ${cause} ${rollback.sentence}`
      await deps.appendHistory(event('failed', {bundleId: intent.from.bundleId, message}))
      await recorder.end()
      throw new CheckFailedError('UPGRADE_ROLLED_BACK', message, {
        suggestions: [
          `Backup ${intent.backup!.id} holds the pre-upgrade data.`,
          ...(rollback.safetyBackup
            ? [`Safety backup ${rollback.safetyBackup} holds the data the rollback replaced.`]
            : []),
        ],
      })
    }
    if (now.activeBundleId !== newBundleId) {
      const activated = await runner
        .step(`Activate bundle ${newBundleId} (MLflow ${intent.to.mlflowVersion})`, () =>
          deps.activate(guid, newBundleId),
        )
        .then(() => undefined)
        .catch((error: Error) => error.message.split('\n')[0])
      if (activated !== undefined) return failed(activated)
      await recorder.step('activated')
    }
    const check = await runner.step(`Verify bundle ${newBundleId} (MLflow ${intent.to.mlflowVersion})`, () =>
      deps.verify(guid, intent.to.mlflowVersion),
    )
    if (!check.ok) return failed(`the new bundle fails verification: ${check.failures.join('; ')}`)
    await recorder.step('verified')
    const after = await serving(deps, guid)
    await deps.appendHistory(
      event('ok', {
        bundleId: newBundleId,
        revision: after.revision,
        message: `from MLflow ${intent.from.mlflowVersion} (bundle ${intent.from.bundleId}), resumed after "${stoppedAfter}"; backup ${intent.backup?.id ?? 'none'}`,
      }),
    )
    await recorder.end()
    return {
      guid,
      outcome: 'upgraded',
      stoppedAfter,
      activeBundleId: newBundleId,
      mlflowVersion: intent.to.mlflowVersion,
      backupId: intent.backup?.id,
      message: `Upgraded: bundle ${newBundleId} (MLflow ${intent.to.mlflowVersion}) serves the migrated data (schema ${after.revision ?? intent.to.head}).`,
    }
  })
}

/** Steps after which nothing on Connect had changed: the upgrade stopped before its draft was deployed. */
const NOTHING_DEPLOYED: readonly UpgradeStep[] = ['started', 'backup-taken', 'bundle-uploaded']

/**
 * Undoes an interrupted upgrade (or finishes its rollback): the backup goes back when the schema moved, and the
 * previous bundle serves again, verified. `forget` drops the record and changes nothing (for a deployment someone
 * has since deployed to by hand).
 * @throws CheckFailedError ROLLBACK_FAILED
 */
export async function abortUpgrade(
  deps: ApplyDeps,
  guid: string,
  options: {forget?: boolean},
  runner: StepRunner,
): Promise<RecoveryResult> {
  return locked(deps, guid, async () => {
    const intent = await deps.intents.read(guid)
    if (!intent) return {guid, outcome: 'none', message: `No upgrade of ${guid} is unfinished on this machine.`}
    const stoppedAfter = intent.step
    const recorder = new IntentRecorder(deps, intent)
    const event = upgradeEvent(deps, intent.server, guid, intent.to.mlflowVersion)
    if (options.forget) {
      await deps.appendHistory(
        event('failed', {message: `abandoned after "${stoppedAfter}" (upgrade abort --forget); nothing was changed`}),
      )
      await recorder.end()
      return {guid, outcome: 'forgotten', stoppedAfter, message: 'The record was dropped; nothing was changed.'}
    }
    // Recorded as a failed upgrade, the record dropped, and the previous bundle named as what serves.
    const undone = async (ledger: string, extra: Pick<RecoveryResult, 'message' | 'safetyBackup'>) => {
      await deps.appendHistory(event('failed', {bundleId: intent.from.bundleId, message: ledger}))
      await recorder.end()
      return {
        guid,
        outcome: 'rolled-back' as const,
        stoppedAfter,
        activeBundleId: intent.from.bundleId,
        mlflowVersion: intent.from.mlflowVersion,
        backupId: intent.backup?.id,
        ...extra,
      }
    }
    if (!intent.backup || NOTHING_DEPLOYED.includes(stoppedAfter))
      return undone(`aborted after "${stoppedAfter}": nothing had been deployed`, {
        message: `Nothing had been deployed after "${stoppedAfter}": bundle ${intent.from.bundleId} (MLflow ${intent.from.mlflowVersion}) serves as before.`,
      })
    if (
      !(await deps.confirm(
        `Undo the upgrade of ${guid} to MLflow ${intent.to.mlflowVersion} (stopped after "${stoppedAfter}"): restore backup ${intent.backup.id} if the schema moved, and make bundle ${intent.from.bundleId} serve again?`,
      ))
    )
      throw new UsageError('DECLINED', 'Abort declined; nothing changed.')
    if (!intent.cause) await recorder.step('rollback-started', {cause: `upgrade abort after "${stoppedAfter}"`})
    const rollback = await rollBack(deps, recorder, runner)
    return undone(
      `aborted after "${stoppedAfter}". ${rollback.sentence} (backup ${intent.backup.id}${rollback.safetyBackup ? `, safety backup ${rollback.safetyBackup}` : ''})`,
      {message: rollback.sentence, safetyBackup: rollback.safetyBackup},
    )
  })
}
