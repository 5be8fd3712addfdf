// The outside world of `upgrade plan|apply`: the deployment's live state (Connect content, the active bundle
// downloaded and unpacked, the extension's ops status), and the backup, deploy, restore and verify steps.
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import * as tar from 'tar'

import {createBackup} from '../core/backup/create.js'
import {restoreBackup} from '../core/backup/restore.js'
import {deploy, urlsFor, waitForTask, type DraftsPolicy} from '../core/deploy.js'
import type {StepRunner} from '../core/ports.js'
import type {ApplyDeps, LiveDeployment} from '../core/upgrade-apply.js'
import type {LiveState} from '../core/upgrade-plan.js'
import {bumpBundle, selectTarget} from '../core/version-bump.js'
import {verifyExtension} from '../core/verify-extension.js'
import {
  checkBackupRevision,
  externalDatabase,
  upgradeBackupSource,
  upgradeRestoreTarget,
} from '../core/upgrade-storage.js'
import {redact, urlPasswordForms} from '../core/redact.js'
import {ConfigError, ExternalError, UsageError} from '../errors.js'
import {verifyBackupArchive} from './backup/archive.js'
import {connectOpsStatus, type ConnectTransferOptions} from './backup/connect-transfer.js'
import {createBackupDeps} from './backup/index.js'
import {lockRepo} from './backup/repo-files.js'
import {openRepository, type BackupRepository} from './backup/repository.js'
import {createRestoreDeps} from './backup/restore.js'
import {loadCatalog} from './catalog.js'
import type {ConnectClient} from './connect/client.js'
import {createDeployDeps, type DeployDepsOptions} from './deploy-deps.js'
import {readBumpInput, writeBundleFiles} from './fs/bundle-files.js'
import {makeDirs} from './fs/safe-fs.js'
import {readRenderedBundle} from './fs/bundle-dir.js'

export interface UpgradeAdapterOptions extends DeployDepsOptions {
  cacheDir: string
  transfer: ConnectTransferOptions
  /** The backup repository; default: DATA_DIR/upgrade-backups/GUID. */
  repo?: string
  /** The external database's URL (storage other than local), for the backup and a rollback restore. */
  databaseUrl?: string
  passphrase?: string
  toolVersion: string
  timeoutMs: number
  drafts?: DraftsPolicy
  runner: StepRunner
  onProgress(line: string): void
  onWarning(message: string): void
}

/** The deployment as it runs now: its content, its active bundle (unpacked into a scratch dir) and its ops status. */
export async function readLiveDeployment(options: UpgradeAdapterOptions, guid: string): Promise<LiveDeployment> {
  const {connect} = createDeployDeps(options)
  const content = await connect.getContent(guid)
  if (!content.bundle_id)
    throw new UsageError(
      'NOTHING_DEPLOYED',
      `Content ${guid} has no active bundle: deploy one first (mlflowctl deploy).`,
    )
  const bundleDir = await mkdtemp(join(tmpdir(), 'mlflowctl-upgrade-'))
  try {
    return await readInto(options, connect, guid, content.bundle_id, bundleDir)
  } catch (error) {
    await rm(bundleDir, {recursive: true, force: true})
    throw error
  }
}

async function readInto(
  options: UpgradeAdapterOptions,
  connect: ConnectClient,
  guid: string,
  bundleId: string,
  bundleDir: string,
): Promise<LiveDeployment> {
  const archive = join(bundleDir, '..', `${bundleDir.split('/').pop()}.tar.gz`)
  await writeFile(archive, await connect.downloadBundle(guid, bundleId))
  try {
    // tar strips absolute paths and `..` entries: the bundle cannot write outside its directory.
    await tar.x({file: archive, cwd: bundleDir, strict: true})
  } catch (error) {
    throw new ExternalError(
      'BUNDLE_UNREADABLE',
      `Bundle ${bundleId} of ${guid} is not a readable tar.gz: ${(error as Error).message}.`,
    )
  } finally {
    await rm(archive, {force: true})
  }
  const bundle = await readRenderedBundle(bundleDir).catch(() => {
    throw new ConfigError(
      'NOT_AN_MLFLOWCTL_BUNDLE',
      `The active bundle ${bundleId} of ${guid} was not rendered by mlflowctl (no manifest.json and mlflowctl.json).`,
      {suggestions: ['Deploy the extension with mlflowctl deploy first.']},
    )
  })
  const status = await connectOpsStatus(options.transfer, guid)
  const state: LiveState = {
    server: options.server,
    guid,
    bundleId: bundleId,
    bundle,
    status: {
      mlflowVersion: String(status.mlflowVersion ?? ''),
      dbRevision: status.dbRevision ?? null,
      schemaState: String(status.schemaState ?? 'unknown'),
      storageMode: String(status.storageMode ?? bundle.info.storage),
      backendStore: status.backendStore,
      // Extensions before this status field: the backend URL's scheme tells (postgresql+psycopg:// → postgresql).
      dialect:
        status.dbDialect ??
        (status.storageMode === 'local' ? 'sqlite' : (/^(\w+)/.exec(status.backendStore ?? '')?.[1] ?? 'unknown')),
      pythonVersion: status.pythonVersion,
      sqliteVersion: status.sqliteVersion,
      rowEstimates: status.rowEstimates,
      tables: status.tables?.filter((table) => !table.startsWith('alembic_')),
    },
  }
  return {state, bundleDir}
}

/** The steps `applyUpgrade` runs, against Connect, the backup repository and the deployment's data. */
export async function createApplyDeps(options: UpgradeAdapterOptions): Promise<ApplyDeps & {dispose(): Promise<void>}> {
  const scratchDirs: string[] = []
  const {catalog, overlay} = await loadCatalog()
  const deployDeps = createDeployDeps(options)
  let repository: BackupRepository | undefined
  const repositoryFor = async (guid: string) => {
    if (!repository) {
      const raw = options.repo ?? join(options.dataDir, 'upgrade-backups', guid)
      if (!options.repo) await makeDirs(raw)
      repository = await openRepository(raw, (path) => resolve(path), options.dataDir)
    }
    return repository
  }
  const external = (live: LiveState) => externalDatabase(live, options.databaseUrl)
  const contentUrl = async (guid: string) =>
    urlsFor(options.server, guid, await deployDeps.connect.getContent(guid)).contentUrl
  return {
    catalog,
    overlay,
    readLive: async (guid) => {
      const live = await readLiveDeployment(options, guid)
      scratchDirs.push(live.bundleDir)
      return live
    },
    lock: async (guid) => {
      const dir = join(options.dataDir, 'upgrade-locks', guid)
      await makeDirs(dir)
      return lockRepo(dir, options.onWarning)
    },
    backup: async (live) => {
      const database = external(live)
      const repo = await repositoryFor(live.guid)
      const deps = createBackupDeps({
        repository: repo,
        dataDir: options.dataDir,
        onWarning: options.onWarning,
        passphrase: options.passphrase,
        connect: options.transfer,
      })
      const {source, artifacts} = upgradeBackupSource(live, database, options.databaseUrl)
      const created = await createBackup(deps, {
        source,
        repo: repo.display,
        artifacts,
        toolVersion: options.toolVersion,
        encrypted: Boolean(options.passphrase),
      })
      created.warnings.forEach(options.onWarning)
      checkBackupRevision(created, live)
      const fetched = await repo.fetch(created.id)
      try {
        await verifyBackupArchive(fetched.path, {passphrase: options.passphrase})
      } finally {
        await fetched.release()
      }
      await repo.markVerified(created.id, new Date())
      return {id: created.id, path: created.path, revision: created.revision}
    },
    bumpAndDeploy: async (bundleDir, targetVersion, guid) => {
      const input = await readBumpInput(bundleDir, options.toolVersion)
      const release = catalog.releases.find((r) => r.version === targetVersion)
      const bumped = bumpBundle(
        input,
        selectTarget(
          input.info.mlflowVersion,
          [{version: targetVersion, requiresPython: release?.requiresPython || undefined}],
          {kind: 'to', version: targetVersion},
        ),
      )
      await writeBundleFiles(bundleDir, bumped.writes)
      const result = await deploy(
        deployDeps,
        {
          dir: bundleDir,
          server: options.server,
          apiKey: options.apiKey,
          createNew: false,
          guid,
          env: [],
          oauthIntegrations: [],
          timeoutMs: options.timeoutMs,
          dryRun: false,
          drafts: options.drafts,
        },
        options.runner,
      )
      result.warnings?.forEach(options.onWarning)
      return {bundleId: result.bundleId!, revision: result.verification?.revision}
    },
    serving: async (guid) => {
      const content = await deployDeps.connect.getContent(guid)
      const status = await connectOpsStatus(options.transfer, guid).catch(() => undefined)
      return {
        activeBundleId: content.bundle_id ?? null,
        revision: status?.dbRevision ?? undefined,
        mlflowVersion: status?.mlflowVersion,
        tables: status?.tables?.filter((table) => !table.startsWith('alembic_')),
      }
    },
    restore: async (backup, live, hold) => {
      const database = external(live)
      const repo = await repositoryFor(live.guid)
      const target = upgradeRestoreTarget(live, database, options.databaseUrl)
      const deps = createRestoreDeps({
        cacheDir: options.cacheDir,
        dataDir: options.dataDir,
        safetyRepo: repo,
        passphrase: options.passphrase,
        connect: options.transfer,
        confirm: async () => true,
        onProgress: options.onProgress,
        onWarning: options.onWarning,
      })
      const fetched = await repo.fetch(backup.id)
      try {
        const restored = await restoreBackup(deps, {archive: fetched.path, target, force: true, keepRevision: hold})
        return {safetyBackup: restored.safetyBackup}
      } finally {
        await fetched.release()
      }
    },
    activate: (guid, bundleId) =>
      waitForTask(deployDeps, guid, bundleId, true, options.timeoutMs, options.onProgress, []),
    verify: async (guid, mlflowVersion) => {
      const opsToken = await options.transfer.opsToken(options.server, guid)
      const result = await verifyExtension(deployDeps.probe, {
        baseUrl: await contentUrl(guid),
        apiKey: options.apiKey,
        opsToken: opsToken ?? '',
        expectedMlflowVersion: mlflowVersion,
      })
      return {ok: result.ok, failures: result.checks.filter((check) => !check.ok).map((check) => check.detail)}
    },
    confirm: async () => true,
    // Error text from drivers can carry a URL or a key: masked before it reaches the ledger.
    appendHistory: (event) =>
      deployDeps.appendHistory(
        event.message
          ? {...event, message: redact(event.message, [options.apiKey, ...urlPasswordForms(options.databaseUrl)])}
          : event,
      ),
    now: () => new Date(),
    dispose: async () => {
      for (const dir of scratchDirs.splice(0)) await rm(dir, {recursive: true, force: true})
    },
  }
}
