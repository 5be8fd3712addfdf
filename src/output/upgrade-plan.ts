import type {UpgradePlan} from '../core/upgrade-plan.js'
import {formatPending} from './migrations.js'

/** The plan for a terminal (text) or as a Markdown report to attach to a change ticket (md). */
export function formatPlan(plan: UpgradePlan, format: 'text' | 'md'): string {
  const md = format === 'md'
  const heading = (text: string) => (md ? `\n## ${text}` : `\n${text}:`)
  const item = (text: string) => (md ? `- ${text}` : `  - ${text}`)
  const lines = [
    md
      ? `# MLflow upgrade plan: ${plan.from.mlflowVersion} → ${plan.to.mlflowVersion}`
      : `Upgrade ${plan.guid}: MLflow ${plan.from.mlflowVersion} → ${plan.to.mlflowVersion}`,
    ...(md
      ? [
          '',
          `Content ${plan.guid} on ${plan.server}, bundle ${plan.bundleId}. Planned ${plan.createdAt}; fingerprint \`${plan.fingerprint}\`.`,
        ]
      : [`  bundle ${plan.bundleId} on ${plan.server}; fingerprint ${plan.fingerprint}`]),
    heading('Schema'),
    item(`${plan.from.revision ?? 'none'} → ${plan.to.head}: ${plan.schema.kind}. ${plan.schema.explanation}`),
    ...formatPending(plan.schema.pending).map((line) => (md ? `    ${line}` : `    ${line}`)),
    ...(plan.schema.estimate ? [item(plan.schema.estimate.summary)] : []),
    heading('Runtime'),
    item(
      `app mode ${plan.to.appMode}${plan.from.appMode !== plan.to.appMode ? ` (was ${plan.from.appMode})` : ''}: ${plan.to.appModeReason ?? 'as before'}`,
    ),
    item(plan.pythonChange ?? `Python ${plan.to.pythonRequires} (the bundle runs ${plan.from.python}): no change`),
  ]
  if (plan.breakingChanges.length > 0)
    lines.push(
      heading('Breaking changes for operators'),
      ...plan.breakingChanges.map((change) => item(`${change.from}: ${change.text}`)),
    )
  if (plan.hazards.length > 0)
    lines.push(heading('Hazards'), ...plan.hazards.map((hazard) => item(`${hazard.code}: ${hazard.message}`)))
  lines.push(
    heading('Blockers'),
    ...(plan.blockers.length > 0
      ? plan.blockers.map((blocker) => item(`${blocker.code}: ${blocker.message}`))
      : [item('none')]),
  )
  lines.push(
    heading(`Strategy: ${plan.strategy}`),
    ...plan.steps.map((step, index) => (md ? `${index + 1}. ${step}` : `  ${index + 1}. ${step}`)),
    heading(`Rollback: ${plan.rollback.kind}`),
    item(plan.rollback.explanation),
  )
  return lines.join('\n')
}
