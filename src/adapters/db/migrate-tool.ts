// `db migrate`: the target MLflow in a managed venv (templates/tools/migrate_db.py), copies of the database for
// a rehearsal (SQLite's backup API; for PostgreSQL a scratch database loaded from a backup), and the repository.
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {join} from 'node:path'

import type {DatabaseTarget} from '../../core/database-url.js'
import type {MigrateDeps} from '../../core/db-migrate.js'
import {redact} from '../../core/redact.js'
import {ExternalError} from '../../errors.js'
import {type ConnectTransferOptions} from '../connect/ops-client.js'
import {type BackupRepository} from '../backup/repository.js'
import {PACKAGE_ROOT} from '../fs/bundle-dir.js'
import {mlflowVenvPython} from '../python/mlflow-venv.js'
import {withPostgres} from './postgres.js'

const MIGRATE_SCRIPT = join(PACKAGE_ROOT, 'templates', 'tools', 'migrate_db.py')

export type MigrateSource = {kind: 'database'; target: DatabaseTarget; url: string} | {kind: 'connect'; guid: string}

export interface MigrateAdapterOptions {
  source: MigrateSource
  cacheDir: string
  dataDir: string
  repository?: BackupRepository
  transfer: ConnectTransferOptions
  /** Reads the deployment's schema for a connect source (its ops status). */
  connectProbe?: MigrateDeps['probe']
  confirm(question: string): Promise<boolean>
  onProgress(line: string): void
}

/** The venv of a bundle pinned to `version` (the one `dev up` and the fake Connect build, so often cached). */
export function mlflowPython(version: string, options: MigrateAdapterOptions): Promise<string> {
  options.onProgress(`preparing MLflow ${version} (a cached venv after the first time)`)
  return mlflowVenvPython(version, {cacheDir: options.cacheDir, purpose: 'migrate', onProgress: options.onProgress})
}

export function runTool<T>(python: string, mode: 'upgrade' | 'init' | 'schema', url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(
      python,
      [MIGRATE_SCRIPT, mode],
      {maxBuffer: 64 * 1024 * 1024, env: {...process.env, PYTHONUNBUFFERED: '1', MLFLOWCTL_MIGRATE_URL: url}},
      (error, stdout, stderr) => {
        if (!error) return resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as T)
        const reason =
          stderr
            .trim()
            .split('\n')
            .filter((line) => /failed:/.test(line))
            .at(-1) ??
          stderr.trim().split('\n').at(-1) ??
          error.message
        reject(new ExternalError('MIGRATION_FAILED', redact(reason, [])))
      },
    )
  })
}

export async function scratchPostgres(
  target: DatabaseTarget,
  url: string,
  label: string,
  onWarning: (message: string) => void,
): Promise<{url: string; drop(): Promise<void>}> {
  const name = `mlflowctl_${label}_${randomBytes(4).toString('hex')}`
  await withPostgres(target, (client) => client.query(`CREATE DATABASE ${name}`)).catch((error: Error) => {
    throw new ExternalError(
      'SCRATCH_DATABASE_FAILED',
      `Cannot create a scratch database for the rehearsal (${error.message}): the role needs CREATEDB.`,
    )
  })
  const scratch = new URL(url)
  scratch.pathname = `/${name}`
  // Not DROP … WITH (FORCE), which needs PostgreSQL 13: end the scratch database's sessions, then drop it.
  const drop = async () => {
    await withPostgres(target, async (client) => {
      await client.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [name],
      )
      await client.query(`DROP DATABASE IF EXISTS ${name}`)
    }).catch((error: Error) =>
      onWarning(`Could not drop the scratch database ${name} (${error.message}): drop it by hand.`),
    )
  }
  return {url: scratch.toString(), drop}
}
