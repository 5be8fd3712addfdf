// The live state of a deployment for `upgrade plan|apply`: the Connect content, its active bundle downloaded and
// unpacked, and the extension's ops status.
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import * as tar from 'tar'

import type {DraftsPolicy} from '../core/deploy.js'
import type {StepRunner} from '../core/ports.js'
import type {LiveDeployment} from '../core/upgrade-apply.js'
import type {LiveState} from '../core/upgrade-plan.js'
import {ConfigError, ExternalError, UsageError} from '../errors.js'
import {connectOpsStatus, type ConnectTransferOptions} from '../adapters/connect/ops-client.js'
import type {ConnectClient} from '../adapters/connect/client.js'
import {createDeployDeps, type DeployDepsOptions} from './deploy.js'
import {readRenderedBundle} from '../adapters/fs/bundle-dir.js'

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
    return await readInto(options, connect, guid, content, bundleDir)
  } catch (error) {
    await rm(bundleDir, {recursive: true, force: true})
    throw error
  }
}

async function readInto(
  options: UpgradeAdapterOptions,
  connect: ConnectClient,
  guid: string,
  content: {bundle_id?: string | null; init_timeout?: number | null},
  bundleDir: string,
): Promise<LiveDeployment> {
  const bundleId = content.bundle_id!
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
    initTimeoutSeconds:
      content.init_timeout ??
      (await connect.defaultInitTimeout(bundle.manifest.metadata.appmode).catch(() => undefined)) ??
      undefined,
  }
  return {state, bundleDir}
}

/** The steps `applyUpgrade` runs, against Connect, the backup repository and the deployment's data. */
