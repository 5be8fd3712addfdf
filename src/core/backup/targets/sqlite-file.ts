/**
 * Targets that are one SQLite file on this machine: an app-data directory (its mlflow.db and artifacts/) and a
 * sqlite:/// URL (with --artifacts-to). The new database is built in scratch space beside the target and swapped in
 * through a journal together with the artifacts, then opened and checked.
 */
import {holdsSqliteFile, type BackupManifest} from '../format.js'
import type {RestoreDeps, RestoreTarget, SwapEntry} from '../restore.js'
import {
  artifactsLeftBehind,
  namedLikeSources,
  type InstallKit,
  type LoadPlan,
  type RestoreTargetDriver,
} from './driver.js'

async function install(dbLive: string, artifactsLive: string | undefined, kit: InstallKit) {
  const {deps, scratch, manifest} = kit
  const loaded = await kit.buildDatabase(artifactsLive)
  const entries: SwapEntry[] = [
    {live: dbLive, staged: kit.plan.stagedDb, aside: deps.paths.join(scratch.path, 'aside', 'mlflow.db')},
    // The old database's journal files belong to it: left beside the new one, SQLite would replay them into it.
    ...['-wal', '-shm', '-journal'].map((suffix) => ({
      live: `${dbLive}${suffix}`,
      aside: deps.paths.join(scratch.path, 'aside', `mlflow.db${suffix}`),
    })),
    ...(await kit.artifactsEntry(artifactsLive)),
  ]
  const swap = () =>
    deps.target.swapIn(entries, {
      journalDirs: kit.journalDirs,
      check: () => deps.target.checkSqlite(dbLive, manifest.alembicRevision!, Boolean(kit.snapshot)),
    })
  await (kit.toObjectStore ? kit.afterUpload(swap) : swap())
  return {...loaded, artifactFiles: artifactsLive ? manifest.artifacts.files : 0}
}

/** The new database is built in scratch space: by real MLflow from table files, or the backup's own SQLite file. */
export const planInScratch = (
  scratchPath: string,
  manifest: BackupManifest,
  deps: RestoreDeps,
  dir = 'new',
): LoadPlan => {
  const stagedDb = deps.paths.join(scratchPath, dir, 'mlflow.db')
  return {
    dbDir: deps.paths.join(scratchPath, 'db'),
    stagedDb,
    loaderUrl: holdsSqliteFile(manifest) ? undefined : `sqlite:///${stagedDb}`,
  }
}

export const appDataTarget: RestoreTargetDriver<Extract<RestoreTarget, {kind: 'app-data'}>> = {
  ...namedLikeSources,
  plan: (_target, scratchPath, manifest, deps) => planInScratch(scratchPath, manifest, deps),
  install: (target, kit) =>
    install(kit.deps.paths.join(target.dir, 'mlflow.db'), kit.deps.paths.join(target.dir, 'artifacts'), kit),
  warnings: (target, {inspection}) =>
    inspection.foreign.length > 0
      ? [`left untouched in ${target.dir}: ${inspection.foreign.join(', ')} (not MLflow's)`]
      : [],
}

export const sqliteTarget: RestoreTargetDriver<Extract<RestoreTarget, {kind: 'sqlite'}>> = {
  ...namedLikeSources,
  plan: (_target, scratchPath, manifest, deps) => planInScratch(scratchPath, manifest, deps),
  install: (target, kit) => install(target.path, kit.options.artifactsTo, kit),
  warnings: (_target, {manifest, artifactsTo}) => artifactsLeftBehind(manifest, artifactsTo),
}
