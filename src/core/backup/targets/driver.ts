/**
 * What a restore does differently per kind of target, behind one interface: where the new database is built, where
 * the artifacts go, how the new data is installed, and what to warn about. restore.ts picks the driver once
 * (targets/index.ts) and never asks for the kind again. The helpers that several drivers share (building the
 * database in scratch space, staging or uploading the artifacts) are in the kit. Pure: I/O goes through RestoreDeps.
 */
import {ConfigError} from '../../../errors.js'
import {isObjectStoreUrl} from '../../artifact-url.js'
import {sameRoot, type LocationRewrite} from '../artifact-locations.js'
import {countsOf} from '../deep-verify.js'
import {SQLITE_FILE_ENTRY, holdsSqliteFile, type BackupManifest} from '../format.js'
import {loadPrepared, type PreparedDatabase, type RowSource} from '../prepared-database.js'
import {checkRowsAfterRewrite} from '../restore-schema.js'
import {historyLocation, secretsOf} from '../create.js'
import {describeTarget} from '../locations.js'
import type {
  RestoreDeps,
  RestoreOptions,
  RestoreScratch,
  RestoreTarget,
  SwapEntry,
  TargetInspection,
} from '../restore.js'

/** Where each part of the new data is built, decided from the manifest before the archive is read. */
export interface LoadPlan {
  dbDir: string
  /** The new SQLite database in scratch space (targets that swap or upload a file). */
  stagedDb: string
  /** The database real MLflow loads into, or undefined when the backup's SQLite file is used as it is. */
  loaderUrl?: string
  /** The loader builds in the target itself (a staging schema), replacing its tables under --force, and waits
   * for a COMMIT from the driver; else it fills `stagedDb`. */
  inPlace?: {mark: string}
}

export type Installed = {tables: number; rows: number; artifactFiles: number; locations?: LocationRewrite}

export interface RestoreTargetDriver<T extends RestoreTarget = RestoreTarget> {
  /** The target as messages name it. */
  describe(target: T): string
  /** The target as a --to argument in a command to paste (a database URL with its password is not repeated). */
  asArgument(target: T): string
  /** Where the target is, as the history ledger names it. */
  historyLocation(target: T): string
  /** What of the target must never be printed. */
  secrets(target: T): string[]
  plan(target: T, scratchPath: string, manifest: BackupManifest, deps: RestoreDeps): LoadPlan
  /** Builds the new data from scratch space and puts it in place: all of it, or nothing. */
  install(target: T, kit: InstallKit): Promise<Installed>
  /** What the user should know about a restore that succeeded. */
  warnings(target: T, facts: {manifest: BackupManifest; inspection: TargetInspection; artifactsTo?: string}): string[]
}

export interface InstallContext {
  deps: RestoreDeps
  options: RestoreOptions
  scratch: RestoreScratch
  manifest: BackupManifest
  plan: LoadPlan
  prepared: Promise<PreparedDatabase> | undefined
  /** The target held data and a safety backup was taken: its MLflow data is replaced. */
  replace: boolean
}

/** A restore's context and the steps that several kinds of target share. */
export interface InstallKit extends InstallContext {
  /** Format 2's SQLite file in scratch space (checked before anything else), or undefined for table files. */
  snapshot?: string
  source: RowSource
  /** The archive's artifacts, extracted and checked. */
  extracted: string
  artifactsScratch: string
  journalDirs: string[]
  toObjectStore: boolean
  /** Rewrites the rows' absolute artifact locations when the artifacts land somewhere else than they were. */
  moveLocations(newRoot: string | undefined): Promise<LocationRewrite | undefined>
  /** The new database in scratch space (`plan.stagedDb`), its artifact locations moved to `newRoot` first. */
  buildDatabase(newRoot: string | undefined): Promise<Omit<Installed, 'artifactFiles'>>
  /** Moves every extracted artifact into `to`. @throws ConfigError RESTORE_INCOMPLETE on a shortfall */
  stageArtifacts(to: string): Promise<number>
  /** Uploads the artifacts to --artifacts-to, then runs `commit`; deletes the upload if the commit fails. */
  afterUpload(commit: () => Promise<void>): Promise<void>
  /** The swap entry of a local artifacts tree at `live` (none for an object store or no artifacts destination). */
  artifactsEntry(live: string | undefined): Promise<SwapEntry[]>
}

/**
 * Where the backup's artifacts were (its manifest's root; an app-data backup made before the root was recorded
 * kept them in <data dir>/artifacts), or undefined when the backup does not say. Pure.
 */
export function backedUpArtifactRoot(
  manifest: BackupManifest,
  join: (...parts: string[]) => string,
): string | undefined {
  if (manifest.artifacts.root) return manifest.artifacts.root
  return manifest.source.kind === 'app-data' ? join(manifest.source.location, 'artifacts') : undefined
}

export function installKit(context: InstallContext): InstallKit {
  const {deps, options, scratch, manifest, plan, prepared} = context
  const snapshot = holdsSqliteFile(manifest) ? deps.paths.join(scratch.path, SQLITE_FILE_ENTRY) : undefined
  const source: RowSource = snapshot ? {sqliteFile: snapshot} : {tableFiles: plan.dbDir}
  const extracted = deps.paths.join(scratch.path, 'artifacts')
  const artifactsScratch = scratch.artifactsPath ?? scratch.path
  const artifactsTo = options.artifactsTo
  const kit: InstallKit = {
    ...context,
    snapshot,
    source,
    extracted,
    artifactsScratch,
    journalDirs: [...new Set([scratch.path, artifactsScratch])],
    // A bucket has no rename: the artifacts are uploaded before the database commits, and deleted if it does not.
    toObjectStore: Boolean(artifactsTo && isObjectStoreUrl(artifactsTo)),
    async moveLocations(newRoot) {
      const from = backedUpArtifactRoot(manifest, deps.paths.join)
      if (options.keepArtifactLocations || !from || !newRoot || sameRoot(from, newRoot)) return undefined
      const rewritten =
        'sqliteFile' in source
          ? await deps.loader.rewriteArtifactLocationsInSqlite(source.sqliteFile, from, newRoot)
          : await deps.loader.rewriteArtifactLocations(source.tableFiles, from, newRoot)
      // The rows are counted again after the rewrite: whatever the file holds must not have acted on it.
      if ('sqliteFile' in source) checkRowsAfterRewrite(manifest, await deps.loader.countSqliteRows(source.sqliteFile))
      return {from, to: newRoot, rewritten, total: Object.values(rewritten).reduce((sum, count) => sum + count, 0)}
    },
    async buildDatabase(newRoot) {
      const locations = await kit.moveLocations(newRoot)
      if (!prepared) {
        await deps.target.makeDir(deps.paths.dirname(plan.stagedDb))
        await deps.target.moveFile(snapshot!, plan.stagedDb)
        return {...countsOf(manifest.rowCounts), locations}
      }
      return {...(await loadPrepared(prepared, source)), locations}
    },
    async stageArtifacts(to) {
      const files = await deps.target.stageTree(extracted, to)
      // Every file the manifest lists must be staged; a shortfall would swap in a tree with holes.
      if (files !== manifest.artifacts.files)
        throw new ConfigError(
          'RESTORE_INCOMPLETE',
          `Staged ${files} artifact files, but backup ${manifest.id} has ${manifest.artifacts.files}; nothing was replaced.`,
        )
      return files
    },
    async afterUpload(commit) {
      const upload = await deps.target.uploadArtifacts(extracted, artifactsTo!)
      try {
        if (upload.files !== manifest.artifacts.files)
          throw new ConfigError(
            'RESTORE_INCOMPLETE',
            `Uploaded ${upload.files} artifact files, but backup ${manifest.id} has ${manifest.artifacts.files}; nothing was replaced.`,
          )
        await commit()
      } catch (error) {
        await upload.undo()
        throw error
      }
    },
    async artifactsEntry(live) {
      if (!live || kit.toObjectStore) return []
      const staged = deps.paths.join(artifactsScratch, 'new-artifacts')
      await kit.stageArtifacts(staged)
      return [{live, staged, aside: deps.paths.join(artifactsScratch, 'aside', 'artifacts')}]
    },
  }
  return kit
}

/** The warning of a database-only target restored without --artifacts-to. Pure. */
export function artifactsLeftBehind(manifest: BackupManifest, artifactsTo: string | undefined): string[] {
  return !artifactsTo && manifest.artifacts.files > 0
    ? [
        `${manifest.artifacts.files} artifact files were not restored: pass --artifacts-to DIR or an s3://, wasbs:// or gs:// prefix (the server's MLFLOW_ARTIFACTS_DESTINATION).`,
      ]
    : []
}

/** How a target that could also be backed up is named: as messages name a location, and as history names a source. */
export const namedLikeSources: Pick<RestoreTargetDriver, 'describe' | 'asArgument' | 'historyLocation' | 'secrets'> = {
  describe: (target) => describeTarget(target),
  asArgument: (target) => describeTarget(target),
  historyLocation: (target) => historyLocation(target),
  secrets: (target) => secretsOf(target),
}
