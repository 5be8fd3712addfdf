// `db migrate`: the target MLflow in a managed venv (templates/tools/migrate_db.py), copies of the database for
// a rehearsal (SQLite's backup API; for PostgreSQL a scratch database loaded from a backup), and the repository.
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {createBackup} from '../../core/backup/create.js'
import {restoreBackup} from '../../core/backup/restore.js'
import type {DatabaseTarget} from '../../core/database-url.js'
import {diffSchemas, type MigrateDeps, type Rehearsal, type SchemaDescription} from '../../core/db-migrate.js'
import {redact} from '../../core/redact.js'
import {ExternalError, UsageError} from '../../errors.js'
import {fetchConnectSnapshot, type ConnectTransferOptions} from '../backup/connect-transfer.js'
import {createBackupDeps} from '../backup/index.js'
import {localRepository, type BackupRepository} from '../backup/repository.js'
import {createRestoreDeps} from '../backup/restore.js'
import {snapshotSqlite} from '../backup/sqlite-source.js'
import {loadCatalog} from '../catalog.js'
import {PACKAGE_ROOT} from '../fs/bundle-dir.js'
import {mlflowVenvPython} from '../python/mlflow-venv.js'
import {withPostgres} from './postgres.js'
import {probeSchema} from './schema-probe.js'

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
function mlflowPython(version: string, options: MigrateAdapterOptions): Promise<string> {
  options.onProgress(`preparing MLflow ${version} (a cached venv after the first time)`)
  return mlflowVenvPython(version, {cacheDir: options.cacheDir, purpose: 'migrate', onProgress: options.onProgress})
}

function runTool<T>(python: string, mode: 'upgrade' | 'init' | 'schema', url: string): Promise<T> {
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

async function scratchPostgres(
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

export async function createMigrateDeps(options: MigrateAdapterOptions): Promise<MigrateDeps> {
  const {catalog, overlay} = await loadCatalog()
  const {source} = options
  /** A copy of the database the rehearsal may change, as a URL, and how to throw it away. */
  const copyOf = async (
    scratch: string,
  ): Promise<{
    url: string
    fresh: () => Promise<{url: string; drop(): Promise<void>}>
    drop(): Promise<void>
    from: string
  }> => {
    const sqliteFresh = async () => ({url: `sqlite:///${join(scratch, 'fresh.db')}`, drop: async () => undefined})
    if (source.kind === 'connect') {
      const snapshot = await fetchConnectSnapshot(options.transfer, source.guid, join(scratch, 'snapshot'))
      return {
        url: `sqlite:///${snapshot.db}`,
        fresh: sqliteFresh,
        drop: async () => undefined,
        from: `a snapshot of connect:${source.guid}`,
      }
    }
    if (source.target.engine === 'sqlite') {
      await snapshotSqlite(source.target.sqlitePath!, join(scratch, 'copy.db'))
      return {
        url: `sqlite:///${join(scratch, 'copy.db')}`,
        fresh: sqliteFresh,
        drop: async () => undefined,
        from: "a copy made with SQLite's backup API",
      }
    }
    if (source.target.engine !== 'postgresql')
      throw new UsageError(
        'ENGINE_NOT_SUPPORTED',
        `Rehearsals run on SQLite and PostgreSQL; ${source.target.engine} is not supported yet.`,
      )
    // A scratch database on the same server, loaded from a backup of this one (IDs and all).
    const repo = localRepository(join(scratch, 'repo'))
    const backup = await createBackup(
      createBackupDeps({repository: repo, dataDir: options.dataDir, onWarning: options.onProgress}),
      {
        source: {kind: 'postgresql', url: source.url, display: source.target.display},
        repo: repo.display,
        artifacts: 'none',
        toolVersion: 'rehearsal',
      },
    )
    const copy = await scratchPostgres(source.target, source.url, 'rehearse', options.onProgress)
    try {
      const restoreDeps = createRestoreDeps({
        cacheDir: options.cacheDir,
        dataDir: options.dataDir,
        confirm: async () => true,
        onProgress: options.onProgress,
        onWarning: options.onProgress,
      })
      await restoreBackup(restoreDeps, {
        archive: backup.path,
        target: {kind: 'postgresql', url: copy.url, display: 'scratch'},
        artifactsTo: join(scratch, 'artifacts'),
        force: false,
      })
    } catch (error) {
      await copy.drop()
      throw error
    }
    return {
      url: copy.url,
      fresh: () => scratchPostgres(source.target, source.url, 'fresh', options.onProgress),
      drop: copy.drop,
      from: `a scratch database loaded from backup ${backup.id}`,
    }
  }
  return {
    catalog,
    overlay,
    probe: async () => (source.kind === 'connect' ? options.connectProbe!() : probeSchema(source.target)),
    async rehearse(version): Promise<Rehearsal> {
      const scratch = await mkdtemp(join(tmpdir(), 'mlflowctl-rehearse-'))
      try {
        const python = await mlflowPython(version, options)
        const copy = await copyOf(scratch)
        try {
          options.onProgress(`running MLflow ${version}'s upgrade on ${copy.from}`)
          let upgraded: {seconds: number; revision: string | null}
          try {
            upgraded = await runTool(python, 'upgrade', copy.url)
          } catch (error) {
            return {ok: false, error: (error as Error).message, differences: [], copiedFrom: copy.from}
          }
          const fresh = await copy.fresh()
          try {
            await runTool(python, 'init', fresh.url)
            const [a, b] = await Promise.all([
              runTool<SchemaDescription>(python, 'schema', copy.url),
              runTool<SchemaDescription>(python, 'schema', fresh.url),
            ])
            return {
              ok: true,
              seconds: upgraded.seconds,
              revision: upgraded.revision,
              differences: diffSchemas(a, b),
              copiedFrom: copy.from,
            }
          } finally {
            await fresh.drop()
          }
        } finally {
          await copy.drop()
        }
      } finally {
        await rm(scratch, {recursive: true, force: true})
      }
    },
    verifiedBackups: async () => {
      if (!options.repository) return []
      // Only backups of a database of this engine count (a repository may hold several deployments' backups).
      const engine = source.kind === 'database' ? source.target.engine : 'sqlite'
      const entries = (await options.repository.list()).filter(
        (entry) => entry.verifiedAt && entry.manifest.source.engine === engine,
      )
      return entries
        .sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt))
        .map((entry) => ({id: entry.id, createdAt: entry.manifest.createdAt, revision: entry.manifest.alembicRevision}))
    },
    upgrade: async (version) => {
      if (source.kind !== 'database')
        throw new UsageError(
          'MIGRATE_VIA_UPGRADE',
          'A deployment migrates itself when it starts: use mlflowctl upgrade apply.',
        )
      const python = await mlflowPython(version, options)
      options.onProgress(`running MLflow ${version}'s upgrade on ${source.target.display}`)
      return runTool(python, 'upgrade', source.url)
    },
    confirm: options.confirm,
    now: () => new Date(),
  }
}
