import type {RecoveryResult, UpgradeStatusResult} from '../../core/upgrade-recovery.js'
import type {RollbackResult} from '../../core/rollback.js'
import type {ApplyResult} from '../../core/upgrade-apply.js'

export function showUpgraded(guid: string, result: ApplyResult): string {
  if (result.outcome === 'nothing-to-do')
    return `${guid} already serves MLflow ${result.plan.to.mlflowVersion} at its head: nothing to do.`
  return `Upgraded ${guid}: MLflow ${result.plan.from.mlflowVersion} → ${result.plan.to.mlflowVersion}, bundle ${result.previousBundleId} → ${result.bundleId}, schema ${result.revision}.\nBackup before the upgrade: ${result.backupId}`
}

export function showRolledBack(result: RollbackResult): string {
  const instant = result.instant
    ? `\nInstant rollback: MLflow ${result.mlflowVersion ?? '?'} runs on schema ${result.instant.revision}, ${result.instant.migrations} additive migrations ahead of its own head ${result.instant.head}; data logged since the upgrade stays.`
    : ''
  return `Bundle ${result.toBundleId} is active again on ${result.guid} (was ${result.fromBundleId}); schema ${result.revision}.${instant}\nDashboard: ${result.dashboardUrl}`
}

export function showUpgradeStatus(result: UpgradeStatusResult): string {
  if (!result.interrupted) return `No upgrade of ${result.guid} is unfinished on this machine.`
  const found = result.interrupted
  return [
    `Upgrade ${found.from.mlflowVersion} → ${found.to.mlflowVersion} of ${found.guid}: stopped after "${found.step}" (${found.direction}).`,
    `State: ${found.state}; active bundle ${found.activeBundleId ?? 'none'}, schema ${found.revision ?? 'unknown'}.`,
    found.summary,
    ...found.next.map((command) => `  ${command}`),
  ].join('\n')
}

export function showRecovery(result: RecoveryResult): string {
  return result.outcome === 'none'
    ? result.message
    : `${result.guid}: ${result.outcome} (it had stopped after "${result.stoppedAfter}"). ${result.message}`
}
