import {MlflowctlCommand} from '../../base-command.js'
import {storageTargetOf, storageTrend, type TrendPoint} from '../../core/storage.js'
import type {StorageReport} from '../../core/extension-contract.js'
import {storageTargetFlags} from '../../flags.js'
import {showStorageReport} from '../../output/views/storage.js'

export default class StorageReportCommand extends MlflowctlCommand<typeof StorageReportCommand> {
  static summary = 'Show where the bytes of an MLflow store are, and what gc would free.'
  static description = `The database's size and its largest tables, artifact bytes per experiment, traces (count, bytes, oldest), what
is deleted but not purged (experiments, runs, logged models, model versions, with their bytes), orphaned artifact
directories that no row refers to, and the trend of backup sizes from the history ledger. A deployment's extension (or
a dev instance's) computes it where the data is, in every storage mode; --db with --artifacts-source reads a
self-hosted store from here with the same code. It stays cheap on a large store: table rows come from the database's
statistics (SQLite's max(rowid), PostgreSQL's pg_class), never a count over metrics, and the estimates are marked.
Exit codes: 0 reported, 2 bad flags, 3 configuration, 4 a wrong key or ops token, 5 the store or Connect failed.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666',
    '<%= config.bin %> <%= command.id %> --dev ./mlflow-demo --json',
    '<%= config.bin %> <%= command.id %> --db postgresql://mlflow@db/mlflow --artifacts-source s3://bucket/mlflow',
  ]
  static flags = storageTargetFlags

  async run(): Promise<StorageReport & {location: string; trend: TrendPoint[]}> {
    this.addUrlPassword(this.flags.db)
    const {site, secrets} = await this.deps.storageSite(this.settings, storageTargetOf(this.flags), {
      transfer: this.connectTransfer(),
      onProgress: (line) => this.err(line),
    })
    this.addSecrets(...secrets)
    this.err(`Reading the storage of ${site.location}...`)
    const report = await site.report()
    const trend = storageTrend(await this.deps.history(this.settings.dataDir).read(), site.location)
    this.out(showStorageReport({location: site.location, report, trend}))
    return {location: site.location, ...report, trend}
  }
}
