import {showUpgradeStatus} from '../../output/views/upgrade.js'
import {upgradeStatus, type UpgradeStatusResult} from '../../core/upgrade-recovery.js'
import {ExitCode} from '../../errors.js'
import {UpgradeCommand, deploymentFlags} from '../../upgrade-command.js'

export default class UpgradeStatus extends UpgradeCommand<typeof UpgradeStatus> {
  static summary = 'Show where an unfinished upgrade stopped, and how to finish or undo it.'
  static description = `Reads the upgrade's intent record on this machine (DATA_DIR/upgrades/GUID.json) and what the deployment serves
now (the active bundle and the schema revision). Reads only. Exit codes: 0 no upgrade is unfinished, 6 one is
(the next commands are in the error's suggestions), 3/4/5 as usual.`
  static examples = ['<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --json']
  static flags = {
    ...deploymentFlags,
  }

  async run(): Promise<UpgradeStatusResult> {
    const guid = this.guid()
    const {deps} = await this.upgradeDeps('upgrade status')
    const result = await upgradeStatus(deps, guid).finally(() => deps.dispose())
    this.out(showUpgradeStatus(result))
    if (result.interrupted)
      this.setExitCode(ExitCode.CheckFailed, {
        code: 'UPGRADE_IN_PROGRESS',
        message: result.interrupted.summary,
        suggestions: result.interrupted.next,
      })
    return result
  }
}
