import {Flags} from '@oclif/core'

import {FleetCommand, fleetFlags} from '../../../fleet-command.js'
import {memberRepository, type FleetSummary} from '../../../core/fleet.js'

export default class FleetBackupCreate extends FleetCommand<typeof FleetBackupCreate> {
  static summary = 'Back up every mlflowctl deployment on a Connect server, each into REPO/GUID.'
  static description = `Finds the deployments as fleet list does and runs \`mlflowctl backup create --source connect:GUID
--repo REPO/GUID\` on each, as its own process, --jobs at once: each repository has its own lock, retention and
format, as if backed up alone. Local-storage deployments only (an external database is backed up from its URL). Prints a
summary table and exits with the worst exit code of all.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --repo /backups/mlflow --metrics-file /var/lib/node_exporter/textfile/mlflow-backup.prom',
    '<%= config.bin %> <%= command.id %> --repo s3://ops-backups/mlflow --jobs 2',
  ]
  static flags = {
    ...fleetFlags,
    repo: Flags.string({
      summary: 'The repository root: a directory or an object-store URL; each deployment gets REPO/GUID.',
      required: true,
      env: 'MLFLOWCTL_REPO',
    }),
    format: Flags.string({
      summary: 'snapshot or archive (default: what each repository recorded).',
      options: ['snapshot', 'archive'],
      env: 'MLFLOWCTL_BACKUP_FORMAT',
    }),
  }

  async run(): Promise<FleetSummary> {
    const members = await this.members()
    const summary = await this.runEach(members, (member) => [
      'backup',
      'create',
      '--source',
      `connect:${member.guid}`,
      '--repo',
      memberRepository(this.flags.repo, member.guid),
      ...(this.flags.format ? ['--format', this.flags.format] : []),
    ])
    this.finish(summary, 'backup create')
    return summary
  }
}
