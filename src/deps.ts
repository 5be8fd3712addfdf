// The composition root: the one place that builds the adapters a command runs core with. Commands reach them
// through MlflowctlCommand.deps (built lazily, once per command); in-process command tests replace the factory
// (MlflowctlCommand.createDeps) with fakes, so flags → options, --json and exit codes are tested without
// Connect, databases or Python.
import {createBackupDeps} from './adapters/backup/index.js'
import {createRestoreDeps} from './compose/restore.js'
import {createDeployDeps} from './adapters/deploy-deps.js'
import {historyFile} from './adapters/history-file.js'
import {readLiveDeployment} from './adapters/live-deployment.js'
import {createApplyDeps} from './compose/upgrade.js'

export interface CommandDeps {
  /** Connect, the saved ops tokens, the probes and the history ledger of deploy and rollback. */
  deploy: typeof createDeployDeps
  /** Every step of `upgrade apply`. */
  upgrade: typeof createApplyDeps
  backup: typeof createBackupDeps
  restore: typeof createRestoreDeps
  history: typeof historyFile
  /** A deployment as `upgrade plan` reads it: content, active bundle (unpacked) and ops status. */
  liveDeployment: typeof readLiveDeployment
}

export function createDeps(): CommandDeps {
  return {
    deploy: createDeployDeps,
    upgrade: createApplyDeps,
    backup: createBackupDeps,
    restore: createRestoreDeps,
    history: historyFile,
    liveDeployment: readLiveDeployment,
  }
}
