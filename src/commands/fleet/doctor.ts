import {Flags} from '@oclif/core'

import {FleetCommand, fleetFlags} from '../../fleet-command.js'
import type {FleetSummary} from '../../core/fleet.js'
import {FLEET_DOCTOR_ARGS} from './list.js'

export default class FleetDoctor extends FleetCommand<typeof FleetDoctor> {
  static summary = 'Run doctor on every mlflowctl deployment on a Connect server, --jobs at once.'
  static description = `Finds the deployments as fleet list does and runs \`mlflowctl doctor --guid GUID\` on each, as its own
process (one deployment's failure never stops the others). Prints a summary table naming each failed check and exits
with the worst exit code of all: 0 all passed, 6 a check failed, 5 unreachable, 3 configuration, 4 a key refused.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --server https://connect.example.com --jobs 8',
    '<%= config.bin %> <%= command.id %> --max-backup-age 26h --metrics-file /var/lib/node_exporter/textfile/mlflow-doctor.prom',
  ]
  static flags = {
    ...fleetFlags,
    deep: Flags.boolean({
      summary: 'Also write, read and delete a probe file through each artifact proxy.',
      env: 'MLFLOWCTL_DEEP',
    }),
    'max-backup-age': Flags.string({
      summary: 'Fail a deployment whose last backup recorded here is older (26h, 7d).',
      env: 'MLFLOWCTL_MAX_BACKUP_AGE',
    }),
  }

  async run(): Promise<FleetSummary> {
    const members = await this.members()
    const extra = [
      ...(this.flags.deep ? ['--deep'] : []),
      ...(this.flags['max-backup-age'] ? ['--max-backup-age', this.flags['max-backup-age']] : []),
    ]
    const summary = await this.runEach(members, (member) => [
      'doctor',
      '--guid',
      member.guid,
      ...FLEET_DOCTOR_ARGS,
      ...extra,
    ])
    this.finish(summary, 'doctor')
    return summary
  }
}
