import {Flags} from '@oclif/core'
import {rm} from 'node:fs/promises'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {parseContentGuid} from '../../core/backup/locations.js'
import {planUpgrade, type UpgradePlan} from '../../core/upgrade-plan.js'
import {insecureFlag, targetFlags} from '../../flags.js'
import {formatPlan} from '../../output/upgrade-plan.js'

export default class UpgradePlanCommand extends MlflowctlCommand<typeof UpgradePlanCommand> {
  static summary = 'Plan an MLflow upgrade of a deployment: schema, runtime, hazards, strategy.'
  static description = `Reads the live deployment (the active bundle's pins, the served /version, the schema revision and table sizes
from the extension's ops status) and reports the version jump, the exact migrations with the heavy ones and their
sizes, the Python change, the app mode that will be served and why, the breaking changes operators must know, the hazards and the blockers, and
the strategy: zero-downtime (no schema change: draft, verify, activate) or maintenance (schema change: backup,
deploy, migrations once, verify). --plan-file saves the plan with a fingerprint of the live state, for
mlflowctl upgrade apply --plan-file. Reads only. Exit codes: 0 planned (blockers are in the plan; "blocked" is true),
2 bad flags or an unknown release, 3/4/5 Connect or the extension refused.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --to 3.17.2',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --to 3.17.2 --plan-file upgrade.json --format md > upgrade.md',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({summary: 'GUID of the deployment.', required: true, env: 'MLFLOWCTL_GUID'}),
    to: Flags.string({summary: 'Target MLflow release.', required: true, env: 'MLFLOWCTL_TO'}),
    'plan-file': Flags.file({
      summary: 'Write the plan (JSON, with the live-state fingerprint) to this file.',
      env: 'MLFLOWCTL_PLAN_FILE',
    }),
    format: Flags.string({
      summary: 'Output format of the report.',
      options: ['text', 'md'],
      default: 'text',
      env: 'MLFLOWCTL_FORMAT',
    }),
  }

  async run(): Promise<UpgradePlan & {blocked: boolean; planFile?: string}> {
    const {configDir, dataDir, cacheDir} = this.settings
    const connection = this.connection('upgrade plan')
    const guid = parseContentGuid(this.flags.guid, '--guid')
    const transfer = this.connectTransfer()
    const live = await this.deps.liveDeployment(
      {
        ...connection,
        configDir,
        dataDir,
        cacheDir,
        transfer,
        toolVersion: this.config.version,
        timeoutMs: 0,
        runner: this.tasks(),
        onProgress: () => undefined,
        onWarning: (message) => this.warnUser(message),
      },
      guid,
    )
    await rm(live.bundleDir, {recursive: true, force: true})
    const {catalog, overlay, costs} = await this.deps.catalog()
    const plan = planUpgrade(catalog, overlay, live.state, this.flags.to, new Date(), costs)
    const planFile = this.flags['plan-file'] ? resolve(this.flags['plan-file']) : undefined
    if (planFile) await this.deps.json.writePrivate(planFile, plan)
    this.out(
      `${formatPlan(plan, this.flags.format as 'text' | 'md')}${planFile ? `\n\nPlan saved to ${planFile}: mlflowctl upgrade apply --guid ${guid} --plan-file ${planFile}` : ''}`,
    )
    return {...plan, blocked: plan.blockers.length > 0, ...(planFile ? {planFile} : {})}
  }
}
