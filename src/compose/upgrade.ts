// Composes `upgrade apply`: the steps core/upgrade-apply.ts runs, from the adapters (Connect, the live deployment,
// the backup repository) and the use cases each step is (backup, restore, deploy, version bump, verify).
import {rm} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {createBackup} from '../core/backup/create.js'
import {restoreBackup} from '../core/backup/restore.js'
import {deploy, urlsFor, waitForTask} from '../core/deploy.js'
import type {ApplyDeps} from '../core/upgrade-apply.js'
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
import {verifyBackupArchive} from '../adapters/backup/archive.js'
import {connectOpsStatus} from '../adapters/connect/ops-client.js'
import {createBackupDeps} from './backup.js'
import {lockRepo} from '../adapters/backup/repo-files.js'
import {openRepository, type BackupRepository} from '../adapters/backup/repository.js'
import {createRestoreDeps} from './restore.js'
import {loadCatalog} from '../adapters/catalog.js'
import {createDeployDeps} from './deploy.js'
import {readBumpInput, writeBundleFiles} from '../adapters/fs/bundle-files.js'
import {makeDirs} from '../adapters/fs/safe-fs.js'
import {faultPoint} from '../adapters/fault.js'
import {upgradeIntentFiles} from '../adapters/upgrade-intent-file.js'
import {readLiveDeployment, type UpgradeAdapterOptions} from './live-deployment.js'

export async function createApplyDeps(options: UpgradeAdapterOptions): Promise<ApplyDeps & {dispose(): Promise<void>}> {
  const scratchDirs: string[] = []
  const {catalog, overlay} = await loadCatalog()
  const deployDeps = createDeployDeps(options)
  let repository: BackupRepository | undefined
  const intents = upgradeIntentFiles(options.dataDir)
  const repositoryFor = async (guid: string) => {
    if (!repository) {
      // resume and abort use the repository the upgrade recorded, unless told otherwise.
      const given = options.repo ?? (await intents.read(guid))?.repo
      const raw = given ?? join(options.dataDir, 'upgrade-backups', guid)
      if (!given) await makeDirs(raw)
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
    repo: options.repo,
    intents,
    reached: (step) => faultPoint(`upgrade:${step}`),
    bumpAndDeploy: async (bundleDir, targetVersion, guid, reached) => {
      const input = await readBumpInput(bundleDir, options.toolVersion)
      const release = catalog.releases.find((r) => r.version === targetVersion)
      const bumped = bumpBundle(
        input,
        selectTarget(
          input.info.mlflowVersion,
          [{version: targetVersion, requiresPython: release?.requiresPython || undefined}],
          {kind: 'to', version: targetVersion, allowDowngrade: true},
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
          // The rollback puts the data back (held) into the new bundle before the previous one returns.
          reactivatePrevious: false,
          reached,
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
        // The new MLflow migrates after it starts answering: wait for it as long as a task may take.
        startTimeoutMs: options.timeoutMs,
        report: options.onProgress,
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
