// Real dependencies for the backup commands (local repository; SQLite and PostgreSQL sources).
import {randomBytes} from 'node:crypto'
import {access, stat} from 'node:fs/promises'
import {existsSync} from 'node:fs'
import {join, resolve} from 'node:path'

import type {CreateDeps} from '../core/backup/create.js'
import {parseDatabaseUrl} from '../core/database-url.js'
import {instancePaths} from '../adapters/dev/instance-store.js'
import {historyFile} from '../adapters/history-file.js'
import {faultPoint} from '../adapters/fault.js'
import {deadRuns, openScratch, removeRuns} from '../adapters/fs/scratch.js'
import {fsFailure} from '../adapters/fs/safe-fs.js'
import {CheckFailedError, ConfigError} from '../errors.js'
import {verifyBackupArchive, writeBackupArchive} from '../adapters/backup/archive.js'
import {artifactEntries, listArtifacts, readReferences} from '../adapters/backup/artifact-source.js'
import {recoverTarget, recoveryMayBeNeeded} from '../adapters/backup/restore-target.js'
import {lockTarget} from '../adapters/backup/target-lock.js'
import {isObjectStoreUrl} from '../core/artifact-url.js'
import type {BackupRepository} from '../core/backup/repository.js'
import {NO_CONNECT, fetchConnectSnapshot, type ConnectTransferOptions} from '../adapters/connect/ops-client.js'
import {exportPostgresTables} from '../adapters/backup/postgres-source.js'
import {
  describeSqliteSnapshot,
  dropSchemaObjects,
  readLiveSqlite,
  snapshotSqlite,
  sqliteArtifactReferences,
} from '../adapters/backup/sqlite-source.js'
import {loadCatalog} from '../adapters/catalog.js'
import {expectedSchema, type ExpectedSchema} from '../core/backup/schema-objects.js'

/**
 * A failed snapshot as the error an operator can act on: SQLite's full disk (SQLITE_FULL) and Node's (ENOSPC) are
 * DISK_FULL; a source that is not a SQLite file is not an MLflow database (exit 3), a damaged one SOURCE_CORRUPT.
 */
function snapshotError(error: unknown, source: string, target: string): unknown {
  const code = (error as {code?: string}).code ?? ''
  if (code === 'SQLITE_FULL')
    return fsFailure(
      Object.assign(new Error('database or disk is full'), {code: 'ENOSPC'}),
      'write the snapshot',
      target,
    )
  if (code === 'SQLITE_NOTADB')
    return new ConfigError(
      'SOURCE_NOT_MLFLOW',
      `${source} is not an MLflow database: it is not a SQLite file (${(error as Error).message}). Nothing was backed up.`,
      {suggestions: ['Check the path: an app-data directory holds the mlflow.db that the tracking server writes.']},
    )
  if (code === 'SQLITE_CORRUPT')
    return new CheckFailedError(
      'SOURCE_CORRUPT',
      `${source} is damaged: SQLite cannot read it (${(error as Error).message}). Nothing was backed up.`,
      {
        suggestions: [
          'Restore the newest backup that verifies (mlflowctl backup list), or repair the file with sqlite3 .recover.',
        ],
      },
    )
  return /^E[A-Z]+$/.test(code) ? fsFailure(error, 'write the snapshot', target) : error
}

/** What MLflow's migrations make at a revision (the committed catalog), or undefined for one it does not know. */
export async function mlflowSchemaAt(revision: string): Promise<ExpectedSchema | undefined> {
  const {catalog, overlay} = await loadCatalog()
  return expectedSchema(catalog, overlay, revision)
}

export function createBackupDeps(options: {
  repository: BackupRepository
  dataDir: string
  onWarning: (message: string) => void
  passphrase?: string
  connect?: ConnectTransferOptions
}): CreateDeps {
  const scratchRoot = join(options.dataDir, 'backup')
  return {
    source: {
      // A source that an interrupted restore left half-swapped is put right before it is read, under the target's
      // lock: a restore still at work there is not interrupted (the backup is refused, TARGET_LOCKED).
      recover: async (source, artifactsSource) => {
        if (source.kind === 'connect') return []
        const artifacts = artifactsSource && !isObjectStoreUrl(artifactsSource) ? artifactsSource : undefined
        if (!(await recoveryMayBeNeeded(source, artifacts, options.dataDir))) return []
        const release = await lockTarget(source, artifacts, {
          dataDir: options.dataDir,
          purpose: 'backup',
          onWarning: options.onWarning,
        })
        try {
          return await recoverTarget(source, artifacts, options.dataDir)
        } finally {
          await release()
        }
      },
      exists: (path) =>
        access(path).then(
          () => true,
          () => false,
        ),
      devDataDirOf: async (dir) => {
        if (!existsSync(join(dir, 'mlflowctl.json'))) return undefined
        const data = instancePaths(options.dataDir, resolve(dir)).data
        return existsSync(data) ? data : undefined
      },
      snapshotSqlite: async (source, target) => {
        await snapshotSqlite(source, target).catch((error) => Promise.reject(snapshotError(error, source, target)))
        faultPoint('create:snapshot')
      },
      describeSnapshot: (snapshot) => describeSqliteSnapshot(snapshot),
      expectedSchema: mlflowSchemaAt,
      dropSnapshotObjects: async (snapshot, objects) => dropSchemaObjects(snapshot, objects),
      snapshotReferences: (snapshot) => sqliteArtifactReferences(snapshot),
      exportPostgres: (url, outDir) =>
        exportPostgresTables(
          parseDatabaseUrl(url),
          outDir,
          async (revision) => (await mlflowSchemaAt(revision))?.tables,
        ),
      fetchConnectSnapshot: (guid, dir) => fetchConnectSnapshot(options.connect ?? NO_CONNECT, guid, dir, 'backup'),
      listArtifacts,
      readReferences,
      artifactEntries,
      liveSqlite: async (db) => readLiveSqlite(db),
      databaseState: async (db) => {
        const [file, wal] = await Promise.all([stat(db), stat(`${db}-wal`).catch(() => undefined)])
        return `${file.size}:${file.mtimeMs}/${wal ? `${wal.size}:${wal.mtimeMs}` : '-'}`
      },
    },
    snapshots: options.repository.snapshotWriter(options.passphrase, options.onWarning),
    repository: {
      lock: async () => {
        const release = await options.repository.lock(options.onWarning)
        faultPoint('create:locked')
        return release
      },
      cleanUp: async () => [
        ...(await options.repository.cleanUp((path) => verifyBackupArchive(path, {passphrase: options.passphrase}))),
        ...(await removeRuns(await deadRuns(scratchRoot))).map(
          (run) => `removed the scratch space of a killed run: ${run}`,
        ),
      ],
      stage: (id) => options.repository.stageArchive(id),
      abandon: (id) => options.repository.abandonArchive(id),
      commit: (manifest, staged) => options.repository.commitArchive(manifest, staged),
    },
    archive: {
      // Plaintext (the snapshot, table files) stays in this machine's private data directory, never in the
      // repository's tree, which an rsync may copy off-site while a killed run's scratch is still there.
      scratch: () => openScratch(scratchRoot),
      write: (output, sources, finish) => writeBackupArchive(output, sources, finish, options.passphrase),
    },
    clock: {now: () => new Date(), randomId: () => randomBytes(3).toString('hex')},
    history: historyFile(options.dataDir),
    async ping(url) {
      const response = await fetch(url, {signal: AbortSignal.timeout(10_000)})
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
    },
    paths: {join},
  }
}
