/** Sources on this machine: an app-data directory (mlflow.db and artifacts/) and a SQLite file (sqlite:///…). */
import {UsageError} from '../../../errors.js'
import type {BackupSourceSpec} from '../create.js'
import {alreadyLocated, exportSqlite, type BackupSourceDriver} from './driver.js'

export const appDataSource: BackupSourceDriver<Extract<BackupSourceSpec, {kind: 'app-data'}>> = {
  engine: 'sqlite',
  async locate(source, deps, options) {
    const db = deps.paths.join(source.dir, 'mlflow.db')
    // A safety backup keeps whatever is there: a target with artifacts and no database (yet) included.
    if (options.requireMlflow === false && !(await deps.source.exists(db)))
      return {artifacts: deps.paths.join(source.dir, 'artifacts'), location: source.dir}
    if (!(await deps.source.exists(db))) {
      // A rendered bundle is the directory users know; its dev data lives elsewhere: name it.
      const devData = await deps.source.devDataDirOf?.(source.dir)
      throw new UsageError(
        'SOURCE_NOT_FOUND',
        `${source.dir} is not an app-data directory: it has no mlflow.db.${devData ? ` It is a bundle directory; the data of its dev instance is in ${devData}.` : ''}`,
        {
          suggestions: [
            ...(devData ? [`mlflowctl backup create --source ${devData} --repo ${options.repo}`] : []),
            "Pass the content's data directory (CONNECT_CONTENT_DATA_DIR), or sqlite:////path/to/mlflow.db.",
          ],
        },
      )
    }
    return {db, artifacts: deps.paths.join(source.dir, 'artifacts'), location: source.dir}
  },
  reach: alreadyLocated,
  exportDatabase: (_source, db, deps, scratch) => exportSqlite(db, deps, scratch),
  manifestExtras: () => ({}),
  historyLocation: (source) => `file://${source.dir}`,
  secrets: () => [],
}

export const sqliteSource: BackupSourceDriver<Extract<BackupSourceSpec, {kind: 'sqlite'}>> = {
  engine: 'sqlite',
  async locate(source, deps, options) {
    const found = await deps.source.exists(source.path)
    // A safety backup keeps whatever is there, a database file not made yet included.
    if (!found && options.requireMlflow !== false)
      throw new UsageError('SOURCE_NOT_FOUND', `${source.path} does not exist.`)
    return {db: found ? source.path : undefined, artifacts: options.artifactsSource, location: source.path}
  },
  reach: alreadyLocated,
  exportDatabase: (_source, db, deps, scratch) => exportSqlite(db, deps, scratch),
  manifestExtras: () => ({}),
  historyLocation: (source) => `file://${source.path}`,
  secrets: () => [],
}
