import {Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {showBackupCreated} from '../../output/views/backup.js'
import {insecureFlag, metricsFileFlag, targetFlags} from '../../flags.js'
import {PASSPHRASE_ENV, createBackup, decideEncryption, type CreateResult} from '../../core/backup/create.js'
import {parseBackupSource} from '../../core/backup/locations.js'
import {redact} from '../../core/redact.js'
import {isObjectStoreUrl} from '../../core/artifact-url.js'

export default class BackupCreate extends MlflowctlCommand<typeof BackupCreate> {
  static summary = 'Back up the database and artifacts: a deduplicated snapshot or one archive.'
  static description = `A repository records its format at first use: snapshot for a new one (archive for one that already holds
archives); --format overrides it for one run. A snapshot stores the database and every artifact as content-defined
chunks, each once across all snapshots (packs, an index and the snapshot document, written in that order: a kill leaves
only unreferenced data, which prune removes). Files whose size and mtime (ETag, generation) match the previous snapshot of
the same source are referenced without being read, and an unwritten SQLite database is not even copied; --force-read
rereads everything. An archive is one self-contained .tar.gz for copying by hand.
Takes a consistent snapshot (SQLite's online backup API, or one PostgreSQL REPEATABLE READ transaction
streamed with COPY: both safe while MLflow writes), keeps the SQLite file itself or each PostgreSQL table's COPY text (format 2), and streams them with the artifacts into REPO/ID.mlflowctl-backup.tar.gz (written as .partial,
fsynced, renamed; mode 0600) with a manifest of sizes and SHA-256s. A repository lock keeps overlapping runs apart.
connect:GUID backs up a local-storage deployment on Connect through the extension's POST /_mlflowctl/snapshot (Connect
API key plus the ops token that deploy saved, or MLFLOWCTL_OPS_TOKEN).
A source that is not an MLflow database (an empty file, another application's database) is refused (exit 3); what MLflow
does not make (another table, a trigger, a view) is left out and named. A passphrase (--passphrase-file or
MLFLOWCTL_BACKUP_PASSPHRASE) encrypts, --encrypt or not. Under the lock, what killed runs of this tool left in the
repository is cleaned up first: their partial archives are removed, and an intact archive a kill left unlisted is
committed; an unlisted archive no run of this tool was writing (a copy arriving) is named and left alone. Scratch space
is private (0700), in MLFLOWCTL_DATA_DIR/backup, never in the repository.
Exit codes: 0 done, 2 bad flags, 3 configuration or not an MLflow source, 4 a wrong key or ops token, 5 the repository
or the source (a restore works on it) is locked, a write failed (DISK_FULL when the disk is) or Connect is unreachable.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --source /var/lib/rstudio-connect/data/mlflow --repo /backups/mlflow',
    '<%= config.bin %> <%= command.id %> --source connect:0b0e8e8e-1111-2222-3333-444455556666 --repo s3://ops-backups/mlflow',
    '<%= config.bin %> <%= command.id %> --source sqlite:////srv/mlflow/mlflow.db --artifacts-source /srv/mlflow/artifacts --repo /backups --healthcheck-url https://hc-ping.com/UUID --json',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    source: Flags.string({
      summary: 'An app-data directory, sqlite:////path/mlflow.db, postgresql://… or connect:GUID.',
      required: true,
      env: 'MLFLOWCTL_SOURCE',
    }),
    repo: Flags.string({
      summary:
        'The backup repository: a directory, s3://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix or gs://bucket/prefix.',
      required: true,
      env: 'MLFLOWCTL_REPO',
    }),
    artifacts: Flags.string({
      summary: 'Which artifacts: all, referenced (only where rows point: no orphans) or none.',
      options: ['all', 'referenced', 'none'],
      default: 'all',
      env: 'MLFLOWCTL_ARTIFACTS',
    }),
    'artifacts-source': Flags.string({
      summary: 'Artifact store of a sqlite:/// or postgresql:// source: a directory, s3://, wasbs:// or gs://.',
      env: 'MLFLOWCTL_ARTIFACTS_SOURCE',
    }),
    'healthcheck-url': Flags.string({
      summary: 'Pinged at start (/start), on success and on failure (/fail).',
      env: 'MLFLOWCTL_HEALTHCHECK_URL',
    }),
    encrypt: Flags.boolean({
      summary:
        'Encrypt the archive (AES-256-GCM); implied by a passphrase from --passphrase-file or MLFLOWCTL_BACKUP_PASSPHRASE.',
      allowNo: true,
      env: 'MLFLOWCTL_ENCRYPT',
    }),
    'passphrase-file': Flags.file({
      summary: 'File whose first line is the encryption passphrase.',
      env: 'MLFLOWCTL_PASSPHRASE_FILE',
    }),
    format: Flags.string({
      summary:
        'snapshot (deduplicated, incremental) or archive (one self-contained .tar.gz); default: what the repository recorded at first use.',
      options: ['snapshot', 'archive'],
      env: 'MLFLOWCTL_BACKUP_FORMAT',
    }),
    'force-read': Flags.boolean({
      summary: 'Snapshot: reread every file, even those the previous snapshot shows unchanged.',
      env: 'MLFLOWCTL_FORCE_READ',
    }),
    'metrics-file': metricsFileFlag,
  }

  private connectOptions() {
    return this.connectTransfer()
  }

  async run(): Promise<CreateResult> {
    this.addUrlPassword(this.flags.source)
    const source = parseBackupSource(
      this.flags.source,
      (path) => resolve(path),
      (url) => redact(url),
    )
    const repository = await this.deps.repositories.open(this.flags.repo, this.settings.dataDir)
    const given = await this.deps.passphrase(this.flags['passphrase-file'])
    const from = this.flags['passphrase-file'] ? '--passphrase-file' : given ? PASSPHRASE_ENV : undefined
    const passphrase = decideEncryption(this.flags.encrypt, from) ? given : undefined
    if (passphrase && !this.flags.encrypt) this.err(`Encrypting: a passphrase was given (${from}).`)
    const deps = this.deps.backup({
      repository,
      dataDir: this.settings.dataDir,
      onWarning: (message) => this.warnUser(message),
      passphrase,
      connect: this.connectOptions(),
    })
    this.err(
      `Backing up ${source.kind === 'postgresql' ? source.display : this.flags.source} into ${repository.display}...`,
    )
    const result = await createBackup(deps, {
      source,
      repo: repository.display,
      artifacts: this.flags.artifacts as 'all' | 'referenced' | 'none',
      artifactsSource:
        this.flags['artifacts-source'] && !isObjectStoreUrl(this.flags['artifacts-source'])
          ? resolve(this.flags['artifacts-source'])
          : this.flags['artifacts-source'],
      healthcheckUrl: this.flags['healthcheck-url'],
      toolVersion: this.config.version,
      encrypted: Boolean(passphrase),
      format: this.flags.format as 'snapshot' | 'archive' | undefined,
      forceRead: this.flags['force-read'],
    })
    for (const warning of result.warnings) this.warnUser(warning)
    this.recordMetricBytes(result.bytes)
    this.out(showBackupCreated(result))
    return result
  }
}
