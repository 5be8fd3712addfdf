import {Flags} from '@oclif/core'

import {FleetCommand, fleetFlags} from '../../../fleet-command.js'
import type {FleetSummary} from '../../../core/fleet.js'

export default class FleetUpgradePlan extends FleetCommand<typeof FleetUpgradePlan> {
  static summary = 'Plan the same MLflow upgrade for every mlflowctl deployment on a Connect server.'
  static description = `Finds the deployments as fleet list does and runs \`mlflowctl upgrade plan --guid GUID --to VERSION\` on
each, as its own process, --jobs at once. Reads only. The --json result holds each plan; the summary names the
deployments that could not be planned. Exits with the worst exit code of all.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --to 3.17.2',
    '<%= config.bin %> <%= command.id %> --to 3.17.2 --json',
  ]
  static flags = {
    ...fleetFlags,
    to: Flags.string({summary: 'Target MLflow release.', required: true, env: 'MLFLOWCTL_TO'}),
  }

  async run(): Promise<FleetSummary> {
    const members = await this.members()
    const summary = await this.runEach(members, (member) => [
      'upgrade',
      'plan',
      '--guid',
      member.guid,
      '--to',
      this.flags.to,
    ])
    this.finish(summary, 'upgrade plan')
    return summary
  }
}
