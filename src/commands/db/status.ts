import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {newerUntestedReleases, schemaStatus, type SchemaStatus} from '../../core/catalog.js'
import {insecureFlag, targetFlags} from '../../flags.js'
import {formatPending} from '../../output/migrations.js'

export default class DbStatus extends MlflowctlCommand<typeof DbStatus> {
  static summary = 'Show where a database schema stands against MLflow releases.'
  static description = `Reads alembic_version and the tables (read-only) and places them in the migration catalog generated from the
released MLflow wheels: the revision, whether it is known, the releases it matches, and the migrations pending to --to
(default: the newest release), each flagged heavy or dialect-specific with row estimates (never COUNT(*)). It tells an
empty database, one from before MLflow 1.0, a partial one, another application's alembic revision, and a database
ahead of the target apart. Exit codes: 0 read, 2 bad flags or an unknown version, 4/5 the database or Connect refused.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --db /srv/mlflow/data --to 3.18.0',
    '<%= config.bin %> <%= command.id %> --db postgresql://mlflow@db/mlflow --json',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666',
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
      summary: 'A deployment on Connect (its ops status).',
      exactlyOne: ['db', 'guid'],
      env: 'MLFLOWCTL_GUID',
    }),
    to: Flags.string({
      summary:
        'Target MLflow release (default: the newest tested release; newer ones in the catalog are listed as untested).',
      env: 'MLFLOWCTL_TO',
    }),
  }

  async run(): Promise<SchemaStatus & {database: string; newerUntested: string[]}> {
    this.addUrlPassword(this.flags.db)
    const {catalog, overlay} = await this.deps.catalog()
    const transfer = this.connectTransfer()
    const {probe, database} = this.flags.guid
      ? await this.deps.schema
          .probeDeployment(transfer, this.flags.guid)
          .then((probe) => ({probe, database: probe.database}))
      : await this.fromDatabase(this.flags.db!)
    const status = schemaStatus(catalog, overlay, probe, this.flags.to, probe.rowEstimates)
    const newerUntested = newerUntestedReleases(catalog)
    const matching =
      status.matchingReleases.length > 0
        ? ` (the head of MLflow ${status.matchingReleases.join(', ')})`
        : status.known
          ? ''
          : ' (unknown)'
    this.out(
      [
        `Database: ${database}`,
        `Revision: ${status.revision ?? 'none'}${matching}`,
        `State: ${status.kind}. ${status.explanation}`,
        ...formatPending(status.pending),
        ...(newerUntested.length > 0 && !this.flags.to
          ? [
              `Newer in the catalog, untested with this mlflowctl: ${newerUntested.join(', ')} (db status --to VERSION).`,
            ]
          : []),
      ].join('\n'),
    )
    return {database, ...status, newerUntested}
  }

  private async fromDatabase(raw: string) {
    const {target} = await this.deps.schema.fromFlag(raw)
    return {probe: await this.deps.schema.probe(target), database: target.display}
  }
}
