import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../base-command.js'
import {gcBackupPlan, runGc, storageTargetOf, type GcOutcome} from '../core/storage.js'
import {parseDuration} from '../core/units.js'
import {storageTargetFlags} from '../flags.js'
import {showGc} from '../output/views/storage.js'

export default class Gc extends MlflowctlCommand<typeof Gc> {
  static summary = 'Purge deleted runs and experiments, old traces and orphaned artifacts.'
  static description = `A dry run unless --yes: it prints what would go, per kind, with counts and bytes. It purges runs, experiments and
logged models deleted longer ago than --older-than (through MLflow's own store code, so every cascade holds), the
files of deleted model versions that nothing else uses, with --traces-older-than traces and their artifacts, and with
--orphans artifact directories no row refers to that have not changed for --grace. Rows go first, then their files: a
kill in between leaves only orphans, which --orphans finds; no remaining row ever points at a deleted file, and files a
remaining row still uses (a registered model version's source in a purged run) are kept. It runs while the server
serves, in small batches, one gc per store at a time. With --yes it backs up first into --repo (or MLFLOWCTL_REPO)
unless --no-backup. mlflow-artifacts:/ URIs are resolved to the real files.
Exit codes: 0 done (or dry run), 2 bad flags or --yes without a backup repository, 3 configuration, 4 a wrong key or
ops token, 5 another gc runs (GC_RUNNING), the store or Connect failed.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --older-than 90d --orphans --yes --repo s3://ops-backups/mlflow',
    '<%= config.bin %> <%= command.id %> --db sqlite:////srv/mlflow/mlflow.db --artifacts-source /srv/mlflow/artifacts --traces-older-than 30d --yes --no-backup',
  ]
  static flags = {
    ...storageTargetFlags,
    'older-than': Flags.string({
      summary: 'Purge runs, experiments and logged models deleted longer ago than this.',
      default: '30d',
      env: 'MLFLOWCTL_GC_OLDER_THAN',
    }),
    'experiment-ids': Flags.string({
      summary: 'Only these experiments (comma-separated IDs).',
      env: 'MLFLOWCTL_GC_EXPERIMENT_IDS',
    }),
    'traces-older-than': Flags.string({
      summary: 'Also purge traces older than this, with their artifacts.',
      env: 'MLFLOWCTL_GC_TRACES_OLDER_THAN',
    }),
    orphans: Flags.boolean({
      summary: 'Also delete artifact directories that no row refers to.',
      env: 'MLFLOWCTL_GC_ORPHANS',
    }),
    grace: Flags.string({
      summary: 'With --orphans: only directories unchanged for this long (an upload in flight is never taken).',
      default: '24h',
      env: 'MLFLOWCTL_GC_GRACE',
    }),
    yes: Flags.boolean({summary: 'Delete (without it, a dry run).', env: 'MLFLOWCTL_YES'}),
    'no-backup': Flags.boolean({summary: 'With --yes: do not back up first.', env: 'MLFLOWCTL_GC_NO_BACKUP'}),
    repo: Flags.string({
      summary: 'Where the backup before a purge goes (a directory or object-store URL).',
      env: 'MLFLOWCTL_REPO',
    }),
  }

  async run(): Promise<GcOutcome> {
    this.addUrlPassword(this.flags.db)
    const request = {
      olderThanMs: parseDuration(this.flags['older-than'], '--older-than'),
      experimentIds: this.flags['experiment-ids']
        ?.split(',')
        .map((id) => id.trim())
        .filter(Boolean),
      tracesOlderThanMs: this.flags['traces-older-than']
        ? parseDuration(this.flags['traces-older-than'], '--traces-older-than')
        : undefined,
      orphans: Boolean(this.flags.orphans),
      graceSeconds: parseDuration(this.flags.grace, '--grace') / 1000,
      yes: Boolean(this.flags.yes),
    }
    const backup = gcBackupPlan({yes: request.yes, noBackup: Boolean(this.flags['no-backup']), repo: this.flags.repo})
    const {site, backupSource, secrets} = await this.deps.storageSite(this.settings, storageTargetOf(this.flags), {
      transfer: this.connectTransfer(),
      onProgress: (line) => this.err(line),
    })
    this.addSecrets(...secrets)
    this.err(`${request.yes ? 'Purging' : 'Dry run on'} ${site.location}...`)
    const outcome = await runGc(
      {
        site,
        backup: backup === 'repo' ? () => this.backupFirst(backupSource) : undefined,
        history: this.deps.history(this.settings.dataDir),
        clock: {now: () => new Date()},
        onEvent: (event) => {
          if (event.event === 'progress') this.err(`  ${event.kind}: ${event.done} of ${event.of}`)
        },
      },
      request,
    )
    this.out(showGc(outcome))
    return outcome
  }

  private async backupFirst(source: {source: string; artifactsSource?: string}): Promise<string> {
    this.err(`Backing up ${source.source} into ${this.flags.repo} first...`)
    const created = await this.deps.gcBackup({
      ...source,
      repo: this.flags.repo!,
      dataDir: this.settings.dataDir,
      toolVersion: this.config.version,
      connect: this.connectTransfer(),
      onWarning: (message) => this.warnUser(message),
    })
    return created.id
  }
}
