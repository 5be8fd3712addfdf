import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {planPrune, type PrunePlan} from '../../core/backup/prune.js'
import {formatBytes} from '../../core/units.js'

interface DataCollected {
  packsRemoved: number
  packsRewritten: number
  blobsRepacked: number
  freedBytes: number
  keptBytes: number
}

export default class BackupPrune extends MlflowctlCommand<typeof BackupPrune> {
  static summary = 'Delete old backups by a retention policy (only with --yes).'
  static description = `Keeps the newest N (--keep-last) and the newest backup of each of the last N days, ISO weeks and months
(UTC), like restic forget. The newest verified backup is always kept. Takes the repository lock.
In a snapshot repository, --yes then collects garbage, as restic prune does: packs no kept snapshot needs are deleted,
packs mostly unneeded are rewritten, and packs a killed backup create left are removed. New packs and a new index are
written before anything is deleted, so a kill at any step leaves every listed snapshot whole.`
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
    'passphrase-file': Flags.file({
      summary:
        'For an encrypted snapshot repository: file whose first line is the passphrase (or MLFLOWCTL_BACKUP_PASSPHRASE).',
      env: 'MLFLOWCTL_PASSPHRASE_FILE',
    }),
  }

  async run(): Promise<PrunePlan & {deleted: boolean; data?: DataCollected}> {
    const repository = await this.deps.repositories.open(this.flags.repo)
    const passphrase = await this.deps.passphrase(this.flags['passphrase-file'])
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
      const snapshots = this.flags.yes && (await repository.format()) !== undefined
      // The passphrase is checked before anything is deleted: without it the data could not be collected after.
      if (snapshots) await repository.checkSnapshots([], passphrase, 'none')
      if (this.flags.yes) for (const backup of plan.remove) await repository.remove(backup.id)
      lines.push(
        '',
        `${plan.remove.length} to remove (${formatBytes(plan.freedBytes)}), ${plan.keep.length} kept.${this.flags.yes ? ' Removed.' : ' Nothing deleted: pass --yes to delete.'}`,
      )
      let data: DataCollected | undefined
      if (snapshots) {
        const collected = await repository.collectGarbage(passphrase)
        data = {
          packsRemoved: collected.remove.length + collected.unindexed.length,
          packsRewritten: collected.repack.length,
          blobsRepacked: collected.repackedBlobs,
          freedBytes: collected.freedBytes,
          keptBytes: collected.keptBytes,
        }
        lines.push(
          `Snapshot data: removed ${data.packsRemoved} packs, rewrote ${data.packsRewritten} (${data.blobsRepacked} blobs kept); ${formatBytes(data.keptBytes)} kept.`,
        )
      }
      this.out(lines.join('\n'))
      return {...plan, deleted: Boolean(this.flags.yes), ...(data ? {data} : {})}
    } finally {
      await release?.()
    }
  }
}
