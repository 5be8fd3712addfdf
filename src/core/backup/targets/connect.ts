/**
 * A local-storage deployment on Connect (connect:GUID): the new app-data directory is built in scratch space here,
 * then streamed to the extension, which swaps it in itself under maintenance.
 */
import type {RestoreTarget} from '../restore.js'
import {namedLikeSources, type RestoreTargetDriver} from './driver.js'
import {planInScratch} from './sqlite-file.js'

export const connectTarget: RestoreTargetDriver<Extract<RestoreTarget, {kind: 'connect'}>> = {
  ...namedLikeSources,
  plan: (_target, scratchPath, manifest, deps) => planInScratch(scratchPath, manifest, deps, 'upload'),
  async install(target, kit) {
    const {deps, manifest} = kit
    const loaded = await kit.buildDatabase(undefined)
    const upload = deps.paths.dirname(kit.plan.stagedDb)
    if (manifest.artifacts.files > 0) await kit.stageArtifacts(deps.paths.join(upload, 'artifacts'))
    const answer = await deps.target.uploadToConnect(target.guid, upload, kit.replace, kit.options.keepRevision)
    return {...loaded, artifactFiles: answer.artifactFiles}
  },
  warnings: () => [],
}
