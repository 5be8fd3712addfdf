import type {RollbackResult} from '../../core/rollback.js'
import type {ApplyResult} from '../../core/upgrade-apply.js'

export function showUpgraded(guid: string, result: ApplyResult): string {
  if (result.outcome === 'nothing-to-do')
    return `${guid} already serves MLflow ${result.plan.to.mlflowVersion} at its head: nothing to do.`
  return `Upgraded ${guid}: MLflow ${result.plan.from.mlflowVersion} → ${result.plan.to.mlflowVersion}, bundle ${result.previousBundleId} → ${result.bundleId}, schema ${result.revision}.\nBackup before the upgrade: ${result.backupId}`
}

export function showRolledBack(result: RollbackResult): string {
  return `Bundle ${result.toBundleId} is active again on ${result.guid} (was ${result.fromBundleId}); schema ${result.revision}.\nDashboard: ${result.dashboardUrl}`
}
