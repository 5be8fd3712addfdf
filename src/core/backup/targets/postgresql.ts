/**
 * A PostgreSQL database: real MLflow builds the schema in a staging schema of the target database, the rows are
 * loaded there, and one transaction swaps the tables in. Local artifacts are renamed into place just before that
 * transaction commits (the journal's mark tells a later run whether it did); object-store artifacts are uploaded
 * before it, and deleted again if it does not commit.
 */
import {loadPrepared} from '../prepared-database.js'
import type {RestoreTarget} from '../restore.js'
import {artifactsLeftBehind, namedLikeSources, type RestoreTargetDriver} from './driver.js'

export const postgresqlTarget: RestoreTargetDriver<Extract<RestoreTarget, {kind: 'postgresql'}>> = {
  ...namedLikeSources,
  // The URL carries a password: a command to paste says where it goes instead of repeating it.
  asArgument: () => "'<the same URL>'",
  plan: (target, scratchPath, manifest, deps) => ({
    dbDir: deps.paths.join(scratchPath, 'db'),
    stagedDb: deps.paths.join(scratchPath, 'new', 'mlflow.db'),
    loaderUrl: target.url,
    inPlace: {mark: `mlflowctl-restore ${manifest.id} ${deps.clock.randomId()}`},
  }),
  async install(target, kit) {
    const {deps, manifest, options} = kit
    const artifactsLive = options.artifactsTo
    const locations = await kit.moveLocations(artifactsLive)
    const entries = await kit.artifactsEntry(artifactsLive)
    const loaded = await loadPrepared(kit.prepared!, kit.source, async (commit) => {
      if (kit.toObjectStore) return kit.afterUpload(commit)
      if (entries.length === 0) return commit()
      await deps.target.swapIn(entries, {
        journalDirs: kit.journalDirs,
        check: async () => undefined,
        database: {display: target.display, mark: kit.plan.inPlace!.mark, commit},
      })
    })
    return {
      ...loaded,
      artifactFiles: entries.length > 0 || kit.toObjectStore ? manifest.artifacts.files : 0,
      locations,
    }
  },
  warnings: (_target, {manifest, artifactsTo}) => artifactsLeftBehind(manifest, artifactsTo),
}
