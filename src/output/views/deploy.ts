import type {DeployResult} from '../../core/deploy.js'
import {keyValues} from '../table.js'

export function showDeploy(result: DeployResult): string {
  const {plan} = result
  if (result.dryRun) {
    return [
      `Dry run: nothing was changed. Target: ${plan.target.guid ?? `new content "${plan.target.create!.name}"`}`,
      keyValues([
        ['MLflow', plan.mlflowVersion],
        [
          'Settings',
          Object.entries(plan.settings)
            .map(([key, value]) => `${key}=${value}`)
            .join(', '),
        ],
        ['Env vars (names)', plan.envNames.join(', ')],
        ['Vanity path', plan.vanity ?? '(unchanged)'],
        ['OAuth integrations', plan.oauthIntegrations.join(', ') || '(unchanged)'],
      ]),
      'Files:',
      ...plan.files.map((file) => `  ${file}`),
    ].join('\n')
  }
  return [
    `Deployed bundle ${result.bundleId} to ${result.guid} and verified it (MLflow ${plan.mlflowVersion}, schema ${result.verification?.revision}).`,
    keyValues([
      ['Content URL', result.contentUrl!],
      ['Dashboard', result.dashboardUrl!],
      ['Logs', result.logsUrl!],
      ['Previous bundle', result.previousBundleId ?? '(none)'],
    ]),
  ].join('\n')
}
