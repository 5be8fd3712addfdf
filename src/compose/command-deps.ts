// The composition root: the one factory every command takes its collaborators from (MlflowctlCommand.deps, built
// once per command). Commands import no adapter; in-process command tests replace this factory
// (MlflowctlCommand.createDeps) with fakes, so flags → options, --json and exit codes are tested without Connect,
// databases or Python. The composed use cases (deploy, upgrade, backup, restore) are imported with this file, as
// every command loaded them before; the other adapters are imported on first use, so a command that does not probe
// a database never loads its drivers (they alone take half a second).
import {resolve} from 'node:path'

import type {ConnectClient, ConnectClientOptions} from '../adapters/connect/client.js'
import type {ConnectTransferOptions} from '../adapters/connect/ops-client.js'
import type {SchemaProbe} from '../adapters/db/schema-probe.js'
import type {BundleArchiveDeps} from '../core/bundle-archive.js'
import type {Catalog} from '../adapters/catalog.js'
import type {BumpInput} from '../core/version-bump.js'
import type {BundleFile} from '../core/bundle.js'
import type {DatabaseTarget} from '../core/database-url.js'
import type {BackupManifest} from '../core/backup/format.js'
import type {BackupRepository} from '../core/backup/repository.js'
import type {DevDeps} from '../core/dev.js'
import type {DoctorProbes} from '../core/doctor/context.js'
import type {InitDeps} from '../core/init.js'
import type {OpsStatus} from '../core/extension-contract.js'
import type {ReplicaContents} from '../core/replica.js'
import type {Settings} from '../config/load.js'
import {createBackupDeps} from './backup.js'
import {connectClient, connectTransferOptions} from './connect.js'
import {bundleArchiveDeps, createDeployDeps} from './deploy.js'
import type {DevDepsOptions} from './dev.js'
import type {DoctorProbeOptions} from './doctor-probes.js'
import type {DoctorTarget} from './doctor-target.js'
import type {FleetDeps} from './fleet.js'
import {readLiveDeployment} from './live-deployment.js'
import {createDeepVerifyDeps, createRestoreDeps} from './restore.js'
import type {MigrateAdapterOptions, MigrateSource} from '../adapters/db/migrate-tool.js'
import type {MigrateDeps} from '../core/db-migrate.js'
import {createApplyDeps} from './upgrade.js'
import {historyFile} from '../adapters/history-file.js'

export type {BackupRepository, ConnectTransferOptions, SchemaProbe}
export type {MigrateSource, ReplicaContents}

/** An archive a backup argument names, on local disk for as long as the caller holds it. */
export interface FetchedArchive {
  path: string
  id?: string
  release(): Promise<void>
}

export interface CommandDeps {
  /** Connect, the saved ops tokens, the probes and the history ledger of deploy and rollback. */
  deploy: typeof createDeployDeps
  /** Every step of `upgrade apply`. */
  upgrade: typeof createApplyDeps
  backup: typeof createBackupDeps
  restore: typeof createRestoreDeps
  deepVerify: typeof createDeepVerifyDeps
  history: typeof historyFile
  /** A deployment as `upgrade plan` reads it: content, active bundle (unpacked) and ops status. */
  liveDeployment: typeof readLiveDeployment
  /** The Connect API client (the one place it is built). */
  connect(options: ConnectClientOptions): Promise<ConnectClient>
  /** How connect:GUID locations reach an extension, from the command's Connect settings. */
  connectTransfer: typeof connectTransferOptions
  /** The extension's ops status (GET /_mlflowctl/status). */
  opsStatus(transfer: ConnectTransferOptions, guid: string): Promise<OpsStatus>
  repositories: {
    /** A directory (resolved against the working directory) or an object-store URL. */
    open(raw: string, scratchRoot?: string): Promise<BackupRepository>
    /** The archive a backup argument names: an ID or `latest` in the repository, else a file path. */
    fetch(backup: string, repository: BackupRepository | undefined): Promise<FetchedArchive>
    /** The directory an archive given by path lives in, as a repository (to find its listing sidecar). */
    directory(dir: string): Promise<BackupRepository>
  }
  /** --passphrase-file's first line, else MLFLOWCTL_BACKUP_PASSPHRASE; undefined when neither is given. */
  passphrase(file: string | undefined): Promise<string | undefined>
  /** Reads a whole archive and checks it against its manifest (scratch space under `scratchRoot`). */
  verifyArchive(path: string, options: {passphrase?: string; scratchRoot: string}): Promise<BackupManifest>
  /** What a replica holds (a directory or an object-store URL). */
  readReplica(url: string): Promise<ReplicaContents>
  schema: {
    /** --db as the user wrote it: an app-data directory (its mlflow.db) or a URL. */
    fromFlag(raw: string): Promise<{target: DatabaseTarget; url: string}>
    probe(target: DatabaseTarget): Promise<SchemaProbe>
    /** A deployment's schema as its extension reports it. */
    probeDeployment(transfer: ConnectTransferOptions, guid: string): Promise<SchemaProbe & {database: string}>
  }
  migrate(options: MigrateAdapterOptions): Promise<MigrateDeps>
  dev(options: DevDepsOptions): Promise<DevDeps>
  doctorProbes(options: DoctorProbeOptions): Promise<DoctorProbes>
  doctorTarget: {
    connect: (typeof import('./doctor-target.js'))['connectDoctorTarget']
    dev(settings: Settings, dir: string): Promise<DoctorTarget>
  }
  /** What `fleet` commands discover and run deployments with. */
  fleet(options: Parameters<(typeof import('./fleet.js'))['createFleetDeps']>[0]): Promise<FleetDeps>
  /** What `deploy-monitor` deploys and schedules with. */
  monitor(connect: ConnectClient): Promise<ReturnType<(typeof import('./monitor.js'))['createMonitorDeps']>>
  /** MLflow releases this mlflowctl knows: migrations, schema fingerprints, measured costs. */
  catalog(): Promise<Catalog>
  /** MLflow's releases on PyPI (or the catalog's when PyPI cannot be reached). */
  mlflowReleases: (typeof import('../adapters/pypi.js'))['mlflowReleases']
  init(): Promise<InitDeps>
  bundleArchive(): Promise<BundleArchiveDeps>
  bundleFiles: {
    readBumpInput(dir: string, toolVersion: string): Promise<BumpInput>
    write(dir: string, files: BundleFile[]): Promise<void>
  }
  /** Where the installed package keeps its templates (the client-auth plugin's source). */
  packageRoot(): Promise<string>
  /** Where `storage report` and `gc` run for a deployment, a dev instance or a self-hosted store. */
  storageSite: (typeof import('./storage.js'))['storageSite']
  /** The backup `gc --yes` takes first. */
  gcBackup: (typeof import('./storage.js'))['backupBefore']
  json: {
    read<T>(path: string): Promise<T | undefined>
    /** Written with 0600 permissions (plans carry no secrets, but name databases and servers). */
    writePrivate(path: string, value: unknown): Promise<void>
  }
}

export function createDeps(): CommandDeps {
  return {
    storageSite: async (...args) => (await import('./storage.js')).storageSite(...args),
    gcBackup: async (...args) => (await import('./storage.js')).backupBefore(...args),
    deploy: createDeployDeps,
    upgrade: createApplyDeps,
    backup: createBackupDeps,
    restore: createRestoreDeps,
    deepVerify: createDeepVerifyDeps,
    history: historyFile,
    liveDeployment: readLiveDeployment,
    connect: async (options) => connectClient(options),
    connectTransfer: connectTransferOptions,
    opsStatus: async (transfer, guid) =>
      (await import('../adapters/connect/ops-client.js')).connectOpsStatus(transfer, guid),
    repositories: {
      open: async (raw, scratchRoot) =>
        (await import('../adapters/backup/repository.js')).openRepository(raw, (path) => resolve(path), scratchRoot),
      fetch: async (backup, repository) =>
        (await import('../adapters/backup/repository.js')).fetchArchive(backup, repository, (path) => resolve(path)),
      directory: async (dir) => (await import('../adapters/backup/repository.js')).localRepository(resolve(dir)),
    },
    passphrase: async (file) => (await import('../adapters/backup/crypto.js')).resolvePassphrase(file),
    async verifyArchive(path, {passphrase, scratchRoot}) {
      // A format 2 database is copied to scratch space while it streams, so that its rows are counted.
      const scratch = await (await import('../adapters/fs/scratch.js')).openScratch(scratchRoot)
      const {verifyBackupArchive} = await import('../adapters/backup/archive.js')
      return verifyBackupArchive(path, {passphrase, sqliteScratch: scratch.path}).finally(() => scratch.remove())
    },
    async readReplica(url) {
      const {openReplica, readReplica} = await import('../adapters/backup/replica-source.js')
      return readReplica(await openReplica(url))
    },
    schema: {
      fromFlag: async (raw) => (await import('../adapters/db/schema-probe.js')).databaseFromFlag(raw),
      probe: async (target) => (await import('../adapters/db/schema-probe.js')).probeSchema(target),
      probeDeployment: async (transfer, guid) =>
        (await import('../adapters/db/schema-probe.js')).probeDeployment(transfer, guid),
    },
    migrate: async (options) => (await import('./db-migrate.js')).createMigrateDeps(options),
    dev: async (options) => (await import('./dev.js')).createDevDeps(options),
    doctorProbes: async (options) => (await import('./doctor-probes.js')).createDoctorProbes(options),
    doctorTarget: {
      connect: async (...args) => (await import('./doctor-target.js')).connectDoctorTarget(...args),
      dev: async (settings, dir) => (await import('./doctor-target.js')).devDoctorTarget(settings, dir),
    },
    fleet: async (options) => (await import('./fleet.js')).createFleetDeps(options),
    monitor: async (connect) => (await import('./monitor.js')).createMonitorDeps(connect),
    catalog: async () => (await import('../adapters/catalog.js')).loadCatalog(),
    mlflowReleases: async (...args) => (await import('../adapters/pypi.js')).mlflowReleases(...args),
    async init() {
      const {EXTENSION_TEMPLATES, isEmptyDir, readTree, writeFiles} = await import('../adapters/fs/bundle-dir.js')
      const {detectPythonVersion, pythonCommand} = await import('../adapters/python/python.js')
      const {loadCatalog} = await import('../adapters/catalog.js')
      const {mlflowReleases} = await import('../adapters/pypi.js')
      return {
        readTemplates: () => readTree(EXTENSION_TEMPLATES),
        isEmptyDir,
        writeFiles,
        pythonVersion: () => detectPythonVersion(pythonCommand(process.env)),
        knownReleases: async () => (await loadCatalog()).catalog.releases.map((release) => release.version),
        publishedReleases: async () => {
          const found = await mlflowReleases(process.env)
          return found.source === 'pypi' ? found.releases.map((release) => release.version) : undefined
        },
      }
    },
    bundleArchive: async () => bundleArchiveDeps(),
    bundleFiles: {
      readBumpInput: async (dir, toolVersion) =>
        (await import('../adapters/fs/bundle-files.js')).readBumpInput(dir, toolVersion),
      write: async (dir, files) => (await import('../adapters/fs/bundle-files.js')).writeBundleFiles(dir, files),
    },
    packageRoot: async () => (await import('../adapters/fs/bundle-dir.js')).PACKAGE_ROOT,
    json: {
      read: async (path) => (await import('../adapters/fs/json-file.js')).readJson(path),
      writePrivate: async (path, value) => (await import('../adapters/fs/json-file.js')).writePrivateJson(path, value),
    },
  }
}
