// Composes `db migrate`: the migration tool and scratch databases (adapters/db/migrate-tool.ts), and the backup
// and restore use cases that copy a PostgreSQL database for a rehearsal and take the backup the gate asks for.
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createBackup} from '../core/backup/create.js'
import {restoreBackup} from '../core/backup/restore.js'
import {diffSchemas, type MigrateDeps, type Rehearsal, type SchemaDescription} from '../core/db-migrate.js'
import {UsageError} from '../errors.js'
import {fetchConnectSnapshot} from '../adapters/connect/ops-client.js'
import {createBackupDeps} from './backup.js'
import {localRepository} from '../adapters/backup/repository.js'
import {createRestoreDeps} from './restore.js'
import {snapshotSqlite} from '../adapters/backup/sqlite-source.js'
import {loadCatalog} from '../adapters/catalog.js'
import {probeSchema} from '../adapters/db/schema-probe.js'
import {mlflowPython, runTool, scratchPostgres, type MigrateAdapterOptions} from '../adapters/db/migrate-tool.js'

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
        // Restored at once by its path, from a scratch repository that goes with the rehearsal.
        format: 'archive',
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
