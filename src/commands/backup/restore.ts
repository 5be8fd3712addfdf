import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {showRestored} from '../../output/views/backup.js'
import {insecureFlag, targetFlags} from '../../flags.js'
import {isObjectStoreUrl} from '../../core/artifact-url.js'
import {parseRestoreSource, parseRestoreTarget, restoreBackup, type RestoreResult} from '../../core/backup/restore.js'
import {redact} from '../../core/redact.js'
import {confirmer} from '../../output/prompt.js'

export default class BackupRestore extends MlflowctlCommand<typeof BackupRestore> {
  static summary = 'Restore a backup into an app-data directory, SQLite or PostgreSQL, IDs kept.'
  static description = `Verifies the whole archive while extracting it, has real MLflow create the schema at the backup's revision
(a managed venv), loads every table in foreign-key order (IDs kept, sequences moved past them, generated columns left to
the database), then swaps the result in through a journal: a failure, or a kill at any point, leaves the old data or the
new (the next run finishes or undoes an interrupted swap), and old files are deleted only after the new ones are in place
and checked. A target that is not empty is refused unless --force, which takes a safety backup of everything it replaces
(the --artifacts-to tree included); files in an app-data directory that are not MLflow's are never touched. A path that is
a file is not a directory target. The extension upgrades the schema to its own head when it starts.
connect:GUID (a local-storage deployment) gets the prepared data through the extension's POST /_mlflowctl/restore: it
migrates it to its own MLflow's head and swaps it in under maintenance (other requests get 503 meanwhile).
Only what MLflow's migrations create at the backup's revision is accepted: triggers, views and other tables are refused
(exit 6, BACKUP_SCHEMA_FOREIGN) unless --drop-foreign-objects. One restore at a time per target (exit 5, TARGET_LOCKED).
A killed restore whose target was written to since is not undone over: RECOVERY_CONFLICT (exit 5) names the choice
(mlflowctl backup recover).`
  static examples = [
    '<%= config.bin %> <%= command.id %> 20261128T061500Z-ab12cd --repo /backups/mlflow --to /srv/mlflow/data',
    '<%= config.bin %> <%= command.id %> 20261128T061500Z-ab12cd --repo s3://ops-backups/mlflow --to connect:0b0e8e8e-1111-2222-3333-444455556666 --force --yes',
    '<%= config.bin %> <%= command.id %> ./backup.mlflowctl-backup.tar.gz --to postgresql://mlflow:PASSWORD@db:5432/mlflow --artifacts-to /srv/mlflow/artifacts --json',
  ]
  static args = {
    backup: Args.string({
      description: 'Backup ID or latest (with --repo), or an archive path; none with --from-replica.',
      required: false,
    }),
  }
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    repo: Flags.string({
      summary: 'The backup repository, a directory or s3://, wasbs://, gs:// (also where safety backups go).',
      env: 'MLFLOWCTL_REPO',
    }),
    to: Flags.string({
      summary:
        'Target: an app-data directory, sqlite:////path/mlflow.db, postgresql://… (an empty database) or connect:GUID.',
      required: true,
      env: 'MLFLOWCTL_TO',
    }),
    'artifacts-to': Flags.string({
      summary:
        'Where the artifacts of a SQLite or PostgreSQL target go: a directory, or an empty s3://, wasbs:// or gs:// prefix.',
      env: 'MLFLOWCTL_ARTIFACTS_TO',
    }),
    'keep-artifact-locations': Flags.boolean({
      summary:
        "Keep the rows' absolute artifact locations as they are (default: rewrite them to where the artifacts now are).",
      env: 'MLFLOWCTL_KEEP_ARTIFACT_LOCATIONS',
    }),
    force: Flags.boolean({
      summary: 'Replace a target that holds data (after a safety backup).',
      env: 'MLFLOWCTL_FORCE',
    }),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask before replacing data.', env: 'MLFLOWCTL_YES'}),
    'from-replica': Flags.string({
      summary:
        "Restore from a replica (the extension's MLFLOWCTL_REPLICA_URL: a directory, s3://, wasbs:// or gs://) instead of a backup.",
      env: 'MLFLOWCTL_FROM_REPLICA',
    }),
    at: Flags.string({
      summary:
        'With --from-replica: the moment to restore, ISO 8601 with Z or an offset (2026-12-04T10:15:00Z); default the newest.',
      dependsOn: ['from-replica'],
      env: 'MLFLOWCTL_AT',
    }),
    'drop-foreign-objects': Flags.boolean({
      summary:
        "Leave out what MLflow's migrations do not create (triggers, views, other tables) instead of refusing the backup.",
      env: 'MLFLOWCTL_DROP_FOREIGN_OBJECTS',
    }),
    'passphrase-file': Flags.file({
      summary: 'For an encrypted backup: file whose first line is the passphrase (or MLFLOWCTL_BACKUP_PASSPHRASE).',
      env: 'MLFLOWCTL_PASSPHRASE_FILE',
    }),
  }

  async run(): Promise<RestoreResult> {
    this.addUrlPassword(this.flags.to)
    const repository = this.flags.repo
      ? await this.deps.repositories.open(this.flags.repo, this.settings.dataDir)
      : undefined
    const target = parseRestoreTarget(
      this.flags.to,
      (path) => resolve(path),
      (url) => redact(url),
    )
    const source = parseRestoreSource(this.args.backup, this.flags['from-replica'], this.flags.at, (path) =>
      resolve(path),
    )
    const deps = this.deps.restore({
      ...(source.kind === 'replica' ? {replica: {at: source.at}} : {}),
      cacheDir: this.settings.cacheDir,
      dataDir: this.settings.dataDir,
      safetyRepo: repository,
      passphrase: await this.deps.passphrase(this.flags['passphrase-file']),
      connect: this.connectTransfer(),
      confirm: confirmer({
        yes: this.flags.yes,
        json: this.jsonEnabled(),
        command: [
          `mlflowctl backup restore ${this.args.backup ?? `--from-replica ${this.flags['from-replica']}`}`,
          ...(this.flags.repo ? [`--repo ${this.flags.repo}`] : []),
          `--to ${this.flags.to}`,
          ...(this.flags['artifacts-to'] ? [`--artifacts-to ${this.flags['artifacts-to']}`] : []),
          '--force',
        ].join(' '),
      }),
      onProgress: (line) => this.err(line),
      onWarning: (message) => this.warnUser(message),
    })
    const archive =
      source.kind === 'replica'
        ? {path: source.dir, release: async () => undefined}
        : await this.deps.repositories.fetch(source.ref, repository)
    this.err(`Restoring ${source.kind === 'replica' ? `from replica ${source.dir}` : source.ref}...`)
    const artifactsFlag = this.flags['artifacts-to']
    const artifactsTo = artifactsFlag && !isObjectStoreUrl(artifactsFlag) ? resolve(artifactsFlag) : artifactsFlag
    const result = await restoreBackup(deps, {
      archive: archive.path,
      target,
      artifactsTo,
      force: this.flags.force,
      backupRef: source.kind === 'backup' ? source.ref : undefined,
      repo: this.flags.repo,
      keepArtifactLocations: this.flags['keep-artifact-locations'],
      dropForeignObjects: this.flags['drop-foreign-objects'],
    }).finally(() => archive.release())
    for (const warning of result.warnings) this.warnUser(warning)
    this.out(showRestored(result))
    return result
  }
}
