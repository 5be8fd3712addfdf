import {Flags} from '@oclif/core'

import {showRecovery} from '../../output/views/upgrade.js'
import {abortUpgrade, type RecoveryResult} from '../../core/upgrade-recovery.js'
import {UpgradeCommand, upgradeFlags} from '../../upgrade-command.js'

export default class UpgradeAbort extends UpgradeCommand<typeof UpgradeAbort> {
  static summary = 'Undo an upgrade whose process died, or finish its rollback.'
  static description = `Reads the upgrade's intent record and what the deployment serves, then puts the previous state back: the upgrade's
backup is restored when the schema moved (what it replaces is kept in a safety backup), and the previous bundle is
made active and verified. Nothing is restored when nothing had been deployed. --forget drops the record and changes
nothing, for a deployment someone has since deployed to by hand. Exit codes: 0 undone (or nothing unfinished),
6 the rollback failed (the record stays, so abort can run again), 3/4/5 as usual.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --yes',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --db postgresql://mlflow@db/mlflow --json --yes',
  ]
  static flags = {
    ...upgradeFlags,
    forget: Flags.boolean({summary: 'Drop the record without changing the deployment.', env: 'MLFLOWCTL_FORGET'}),
  }

  async run(): Promise<RecoveryResult> {
    const guid = this.guid()
    const {deps, runner} = await this.upgradeDeps('upgrade abort')
    const result = await abortUpgrade(deps, guid, {forget: this.flags.forget}, runner).finally(() => deps.dispose())
    this.out(showRecovery(result))
    return result
  }
}
