// Composes `backup restore` from its adapters (adapters/backup/python-loader.ts) and, for the safety backup of a
// --force restore, the backup use case (core/backup/create.ts).
import {rename} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {randomBytes} from 'node:crypto'
import {createBackup} from '../core/backup/create.js'
import {SQLITE_FILE_ENTRY} from '../core/backup/format.js'
import {
  openReplica,
  placeReplayed,
  replayReplica,
  replicaManifest,
  type ReplicaContents,
  type ReplicaReader,
} from '../adapters/backup/replica-source.js'
import type {RestoreDeps, RestoreTarget} from '../core/backup/restore.js'
import {restoreDriver} from '../core/backup/targets/index.js'
import {NEWEST_KNOWN_MLFLOW} from '../core/versions.js'
import {uploadArtifactTree} from '../adapters/backup/artifact-upload.js'
import {UsageError} from '../errors.js'
import {faultPoint} from '../adapters/fault.js'
import {dropSchemaObjects, rowCountsOfFile} from '../adapters/backup/sqlite-source.js'
import {makeDirs, pathKind} from '../adapters/fs/safe-fs.js'
import {journalIn, swapIn} from '../adapters/fs/swap.js'
import {historyFile} from '../adapters/history-file.js'
import {createBackupDeps, mlflowSchemaAt} from './backup.js'
import {NO_CONNECT, uploadConnectRestore} from '../adapters/connect/ops-client.js'
import {localRepository} from '../adapters/backup/repository.js'
import {inspectTarget, openRestoreScratch, recoverTarget} from '../adapters/backup/restore-target.js'
import {lockTarget} from '../adapters/backup/target-lock.js'
import {localArtifactsTo, targetSite} from '../adapters/backup/targets/index.js'
import {rewriteLocationsInSqliteFile, rewriteLocationsInTableFiles} from '../adapters/backup/rewrite-locations.js'
import {locationRewriter} from '../core/backup/artifact-locations.js'
import {inspectRestoredSqlite} from '../adapters/backup/deep-verify.js'
import {deadRuns, openScratch, removeRuns} from '../adapters/fs/scratch.js'
import type {DeepVerifyDeps} from '../core/backup/deep-verify.js'
import {
  expectedManifest,
  extractVerified,
  mlflowPython,
  moveTree,
  checkSqlite,
  preparedDatabase,
  inspectSqliteInWorker,
  dropTableFiles,
  startLoader,
  type RestoreDepsOptions,
} from '../adapters/backup/python-loader.js'

/** Where a restore's data comes from: an archive (verified while it is extracted). */
const archiveSource = (options: RestoreDepsOptions): RestoreDeps['source'] => ({
  expectedManifest: (archive) => expectedManifest(archive, options.passphrase),
  extractVerified: (archive, dir, expected, onWritten) =>
    extractVerified(archive, dir, options.passphrase, expected, onWritten),
})

/** … or a replica: replayed into the run's scratch space, then restored like a format 2 database file. */
function replicaSource(options: RestoreDepsOptions, at: number | undefined): RestoreDeps['source'] {
  let replayedFile: string | undefined
  let reader: ReplicaReader | undefined
  let contents: ReplicaContents | undefined
  return {
    async expectedManifest(replica, workDir) {
      replayedFile = join(workDir, 'replayed.db')
      reader = await openReplica(replica)
      options.onProgress(`replaying ${replica}${at === undefined ? '' : ` as of ${new Date(at * 1000).toISOString()}`}`)
      const replayed = await replayReplica(reader, at, replayedFile)
      contents = replayed.contents
      options.onProgress(`replayed ${replayed.frames} WAL frames of generation ${replayed.generation}`)
      for (const warning of replayed.warnings) options.onWarning(warning)
      return replicaManifest(replica, replayedFile, replayed)
    },
    async extractVerified(_replica, dir, expected, onWritten) {
      const artifacts = await placeReplayed(reader!, contents!, replayedFile!, dir)
      if (artifacts > 0) options.onProgress(`fetched ${artifacts} artifact files from the replica`)
      onWritten?.(SQLITE_FILE_ENTRY)
      return expected
    },
  }
}

export function createRestoreDeps(options: RestoreDepsOptions): RestoreDeps {
  return {
    source: options.replica ? replicaSource(options, options.replica.at) : archiveSource(options),
    target: {
      driver: restoreDriver,
      lock: (target, artifactsTo) =>
        lockTarget(target, artifactsTo, {dataDir: options.dataDir, purpose: 'restore', onWarning: options.onWarning}),
      recover: (target, artifactsTo, keep) => recoverTarget(target, artifactsTo, options.dataDir, keep),
      inspect: (target, artifactsTo) => inspectTarget(target, artifactsTo, options.connect),
      scratch: (target, artifactsTo) => openRestoreScratch(target, artifactsTo, options.dataDir),
      safetyBackup: (target, artifactsTo) => safetyBackup(options, target, artifactsTo),
      makeDir: (path) => makeDirs(path),
      async moveFile(from, to) {
        await rename(from, to)
        faultPoint('restore:loaded') // format 2: the new database is ready to be swapped in, as after a load
      },
      async stageTree(from, to) {
        if ((await pathKind(from)) === 'missing') return makeDirs(to).then(() => 0)
        return moveTree(from, to)
      },
      uploadArtifacts: (from, to) => uploadArtifactTree(from, to),
      async swapIn(entries, {journalDirs, ...swapOptions}) {
        for (const entry of entries) await makeDirs(dirname(entry.aside))
        await swapIn(entries, {...swapOptions, journalCopies: journalDirs.map(journalIn)})
      },
      checkSqlite: async (path, revision, checked) => checkSqlite(path, revision, checked),
      uploadToConnect: (guid, dir, force, keepRevision) =>
        uploadConnectRestore(options.connect ?? NO_CONNECT, guid, dir, force, keepRevision),
    },
    loader: {
      async prepareDatabase(url, revision, dbDir, prepareOptions) {
        if (/[?&]auth=/.test(url))
          throw new UsageError(
            'TARGET_NOT_SUPPORTED',
            'Restoring with token authentication (auth=…) is not implemented yet: use a password URL.',
          )
        const python = await mlflowPython(options)
        options.onProgress(
          `creating the schema at ${revision} with MLflow ${NEWEST_KNOWN_MLFLOW} while the archive is read`,
        )
        return preparedDatabase(
          await startLoader(python, url, revision, dbDir, prepareOptions),
          url,
          options.onProgress,
        )
      },
      expectedSchema: mlflowSchemaAt,
      // A replica's replayed file gets the full integrity_check: replica restores are rare and their correctness is
      // the point (a replica of several databases once passed quick_check with a corrupt index).
      inspectSqlite: (file) => inspectSqliteInWorker(file, Boolean(options.replica)),
      dropSqliteObjects: async (file, objects) => dropSchemaObjects(file, objects),
      dropTableFiles: (dbDir, tables) => dropTableFiles(dbDir, tables),
      countSqliteRows: async (file) => rowCountsOfFile(file),
      rewriteArtifactLocations: (dbDir, from, to) => rewriteLocationsInTableFiles(dbDir, locationRewriter(from, to)),
      rewriteArtifactLocationsInSqlite: (file, from, to) =>
        rewriteLocationsInSqliteFile(file, locationRewriter(from, to)),
    },
    clock: {now: () => new Date(), randomId: () => randomBytes(6).toString('hex')},
    confirm: options.confirm,
    history: historyFile(options.dataDir),
    paths: {join, dirname},
  }
}

/** A backup of everything a --force restore replaces (the artifacts-to tree too); returns its archive path. */
async function safetyBackup(options: RestoreDepsOptions, target: RestoreTarget, artifactsTo?: string): Promise<string> {
  const site = targetSite(target)
  const where = site.safetyBackupOf(options.dataDir)
  const repository = options.safetyRepo ?? localRepository(join(dirname(where), 'mlflowctl-safety-backups'))
  options.onProgress(
    `taking a safety backup of ${where}${artifactsTo ? ` and ${artifactsTo}` : ''} into ${repository.display}`,
  )
  const result = await createBackup(
    createBackupDeps({
      repository,
      dataDir: options.dataDir,
      onWarning: options.onWarning,
      connect: options.connect,
      passphrase: options.passphrase,
    }),
    {
      source: target,
      repo: repository.display,
      artifacts: 'all',
      // An object-store --artifacts-to is empty (restores only upload into an empty prefix): nothing to keep.
      artifactsSource: localArtifactsTo(site, artifactsTo),
      toolVersion: 'safety',
      // As private as the backup being restored: encrypted with its passphrase when it has one.
      encrypted: Boolean(options.passphrase),
      // Whatever is there is kept, MLflow's or not (a half-made or foreign database included).
      requireMlflow: false,
      // One self-contained archive: its path is what the operator is given to restore from by hand.
      format: 'archive',
    },
  )
  return result.path
}

/** `backup verify --deep`: the restore's extraction and loader into a scratch SQLite file, then SQLite's checks. */
export function createDeepVerifyDeps(options: RestoreDepsOptions): DeepVerifyDeps {
  const restore = createRestoreDeps(options)
  const root = join(options.dataDir, 'verify')
  // A killed deep verify left plaintext tables here: gone before the next one starts.
  return {
    scratch: async () => (await removeRuns(await deadRuns(root)), openScratch(root)),
    expectedManifest: (archive) => restore.source.expectedManifest(archive, root),
    extractVerified: restore.source.extractVerified,
    prepareDatabase: restore.loader.prepareDatabase,
    inspect: inspectRestoredSqlite,
    expectedSchema: restore.loader.expectedSchema,
    join,
  }
}
