import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {planPrune, type PrunePlan} from '../../core/backup/prune.js'
import {formatBytes} from '../../core/units.js'

export default class BackupPrune extends MlflowctlCommand<typeof BackupPrune> {
  static summary = 'Delete old backups by a retention policy (only with --yes).'
  static description = `Keeps the newest N (--keep-last) and the newest backup of each of the last N days, ISO weeks and months
(UTC), like restic forget. The newest verified backup is always kept. Takes the repository lock.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --repo /backups/mlflow --keep-daily 7 --keep-weekly 4 --keep-monthly 12',
    '<%= config.bin %> <%= command.id %> --repo /backups/mlflow --keep-last 3 --yes --json',
  ]
  static flags = {
    repo: Flags.string({
      summary:
        'The backup repository: a directory, s3://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix or gs://bucket/prefix.',
      required: true,
      env: 'MLFLOWCTL_REPO',
    }),
    'keep-last': Flags.integer({summary: 'Keep the newest N backups.', min: 0, env: 'MLFLOWCTL_KEEP_LAST'}),
    'keep-daily': Flags.integer({
      summary: 'Keep the newest backup of each of the last N days.',
      min: 0,
      env: 'MLFLOWCTL_KEEP_DAILY',
    }),
    'keep-weekly': Flags.integer({
      summary: 'Keep the newest backup of each of the last N weeks.',
      min: 0,
      env: 'MLFLOWCTL_KEEP_WEEKLY',
    }),
    'keep-monthly': Flags.integer({
      summary: 'Keep the newest backup of each of the last N months.',
      min: 0,
      env: 'MLFLOWCTL_KEEP_MONTHLY',
    }),
    yes: Flags.boolean({char: 'y', summary: 'Delete the backups the plan removes.', env: 'MLFLOWCTL_YES'}),
  }

  async run(): Promise<PrunePlan & {deleted: boolean}> {
    const repository = await this.deps.repositories.open(this.flags.repo)
    const policy = {
      keepLast: this.flags['keep-last'],
      keepDaily: this.flags['keep-daily'],
      keepWeekly: this.flags['keep-weekly'],
      keepMonthly: this.flags['keep-monthly'],
    }
    const release = this.flags.yes ? await repository.lock((message) => this.warnUser(message)) : undefined
    try {
      const entries = await repository.list()
      const plan = planPrune(
        entries.map((e) => ({id: e.id, createdAt: e.manifest.createdAt, bytes: e.bytes, verifiedAt: e.verifiedAt})),
        policy,
      )
      const lines = [
        ...plan.keep.map((b) => `keep    ${b.id}  (${b.reasons.join(', ')})`),
        ...plan.remove.map((b) => `remove  ${b.id}`),
      ]
      if (this.flags.yes) for (const backup of plan.remove) await repository.remove(backup.id)
      lines.push(
        '',
        `${plan.remove.length} to remove (${formatBytes(plan.freedBytes)}), ${plan.keep.length} kept.${this.flags.yes ? ' Removed.' : ' Nothing deleted: pass --yes to delete.'}`,
      )
      this.out(lines.join('\n'))
      return {...plan, deleted: Boolean(this.flags.yes)}
    } finally {
      await release?.()
    }
  }
}
