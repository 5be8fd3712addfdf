import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {parseContentGuid} from '../../core/backup/locations.js'
import {migrateDatabase, type MigrateResult} from '../../core/db-migrate.js'
import {parseDuration} from '../../core/units.js'
import {insecureFlag, targetFlags} from '../../flags.js'
import type {MigrateSource} from '../../compose/command-deps.js'
import {formatCost, formatPending} from '../../output/migrations.js'
import {confirmer} from '../../output/prompt.js'

export default class DbMigrate extends MlflowctlCommand<typeof DbMigrate> {
  static summary = 'Show, rehearse or run the schema migrations to an MLflow release.'
  static description = `--dry-run lists the exact migrations from the database's revision to --to, in order, heavy and dialect-specific
ones flagged, with the rows they work over (table statistics, never COUNT(*)). --rehearse runs the target MLflow's real
upgrade (the code behind mlflow db upgrade, in a managed venv) on a copy: SQLite's backup API, a snapshot of a
deployment, or for PostgreSQL a scratch database loaded from a backup. It reports the duration, the error, and how the
result differs from a freshly initialised schema. Without --dry-run the migration runs on the database itself, and
only after a verified backup at the current revision in --repo, younger than --max-backup-age (and --yes when not
interactive). A deployment (--guid) migrates itself when its new MLflow starts: use mlflowctl upgrade apply.
Exit codes: 0 done, 2 bad flags or declined, 4/5 a database or Connect refused, 6 refused (ahead, foreign revision,
no fresh backup) or the rehearsal failed.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --db /srv/mlflow/data --to 3.17.2 --dry-run',
    '<%= config.bin %> <%= command.id %> --db postgresql://mlflow@db/mlflow --to 3.17.2 --rehearse --json',
    '<%= config.bin %> <%= command.id %> --db sqlite:////srv/mlflow/mlflow.db --to 3.17.2 --repo /backups/mlflow --max-backup-age 1h --yes',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    db: Flags.string({
      summary: 'sqlite:////path/mlflow.db, an app-data directory, or postgresql://….',
      exactlyOne: ['db', 'guid'],
      env: 'MLFLOWCTL_DB',
    }),
    guid: Flags.string({
      summary: 'A deployment on Connect (dry run and rehearsal only).',
      exactlyOne: ['db', 'guid'],
      env: 'MLFLOWCTL_GUID',
    }),
    to: Flags.string({summary: 'Target MLflow release.', required: true, env: 'MLFLOWCTL_TO'}),
    'dry-run': Flags.boolean({char: 'n', summary: 'Only list the migrations.', env: 'MLFLOWCTL_DRY_RUN'}),
    rehearse: Flags.boolean({
      summary: 'Run the real upgrade on a copy first, and compare with a fresh schema.',
      env: 'MLFLOWCTL_REHEARSE',
    }),
    repo: Flags.string({
      summary: 'Backup repository holding the verified backup a migration needs.',
      env: 'MLFLOWCTL_REPO',
    }),
    'max-backup-age': Flags.string({
      summary: 'How old that backup may be (30m, 6h, 1d).',
      default: '24h',
      env: 'MLFLOWCTL_MAX_BACKUP_AGE',
    }),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask before migrating.', env: 'MLFLOWCTL_YES'}),
  }

  async run(): Promise<MigrateResult> {
    const {dataDir, cacheDir} = this.settings
    this.addUrlPassword(this.flags.db)
    const transfer = this.connectTransfer()
    const guid = this.flags.guid ? parseContentGuid(this.flags.guid, '--guid') : undefined
    const database = guid ? undefined : await this.deps.schema.fromFlag(this.flags.db!)
    const source: MigrateSource = guid ? {kind: 'connect', guid} : {kind: 'database', ...database!}
    const maxBackupAgeMs = parseDuration(this.flags['max-backup-age'], '--max-backup-age')
    const deps = await this.deps.migrate({
      source,
      cacheDir,
      dataDir,
      transfer,
      repository: this.flags.repo ? await this.deps.repositories.open(this.flags.repo) : undefined,
      connectProbe: guid ? () => this.deps.schema.probeDeployment(transfer, guid) : undefined,
      confirm: confirmer({yes: this.flags.yes, json: this.jsonEnabled(), command: 'mlflowctl db migrate …'}),
      onProgress: (line) => this.err(line),
    })
    const label = guid ? `connect:${guid}` : database!.target.display
    const result = await migrateDatabase(deps, {
      database: label,
      to: this.flags.to,
      dryRun: this.flags['dry-run'],
      rehearse: this.flags.rehearse,
      maxBackupAgeMs,
      readOnlyTarget: guid ? `connect:${guid}` : undefined,
    })
    const {estimate, rehearsal, migrated} = result
    this.out(
      [
        `Database: ${label} at ${result.status.revision ?? 'none'}; target MLflow ${this.flags.to} (${result.status.target.head}): ${result.status.kind}.`,
        ...formatPending(result.pending),
        ...formatCost(estimate),
        ...(rehearsal
          ? [
              `Rehearsal on ${rehearsal.copiedFrom}: ${rehearsal.ok ? `ok in ${rehearsal.seconds} s, at ${rehearsal.revision}` : `FAILED: ${rehearsal.error}`}`,
              ...(rehearsal.differences.length > 0
                ? [
                    `  differs from a fresh ${this.flags.to} schema in ${rehearsal.differences.length} places:`,
                    ...rehearsal.differences.map((d) => `    ${d}`),
                  ]
                : rehearsal.ok
                  ? ['  identical to a fresh schema.']
                  : []),
            ]
          : []),
        ...(migrated
          ? [`Migrated in ${migrated.seconds} s to ${migrated.revision}. Backup before: ${migrated.backupId}.`]
          : []),
      ].join('\n'),
    )
    return result
  }
}
