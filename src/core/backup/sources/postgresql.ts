/** A PostgreSQL database: every MLflow table from one REPEATABLE READ snapshot, as its COPY text. */
import {urlPasswordForms} from '../../redact.js'
import type {BackupSourceSpec} from '../create.js'
import {alreadyLocated, type BackupSourceDriver} from './driver.js'

export const postgresqlSource: BackupSourceDriver<Extract<BackupSourceSpec, {kind: 'postgresql'}>> = {
  engine: 'postgresql',
  locate: async (source, _deps, options) => ({
    db: source.url,
    artifacts: options.artifactsSource,
    location: source.display,
  }),
  reach: alreadyLocated,
  exportDatabase: async (_source, db, deps, scratch) => ({
    ...(await deps.source.exportPostgres(db, scratch)),
    format: 2,
  }),
  manifestExtras: () => ({}),
  historyLocation: (source) => source.display,
  secrets: (source) => urlPasswordForms(source.url),
}
