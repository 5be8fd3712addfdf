import {showRecovery} from '../../output/views/upgrade.js'
import {resumeUpgrade, type RecoveryResult} from '../../core/upgrade-recovery.js'
import {UpgradeCommand, upgradeFlags} from '../../upgrade-command.js'

export default class UpgradeResume extends UpgradeCommand<typeof UpgradeResume> {
  static summary = 'Finish an upgrade whose process died.'
  static description = `Reads the upgrade's intent record and what the deployment serves. When nothing had changed yet, the upgrade runs
again from a new backup (users may have written meanwhile). When the draft had migrated the schema or the new
bundle is active, the new bundle is activated and verified, and the upgrade recorded; if that fails, the backup is
restored and the previous bundle serves, as in upgrade apply. A rollback that had begun cannot be resumed: finish
it with upgrade abort. Exit codes: 0 upgraded (or nothing unfinished), 6 not resumable or rolled back, 3/4/5 as usual.`
  static examples = ['<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --yes']
  static flags = {
    ...upgradeFlags,
  }

  async run(): Promise<RecoveryResult> {
    const guid = this.guid()
    const {deps, runner} = await this.upgradeDeps('upgrade resume')
    const result = await resumeUpgrade(deps, guid, runner).finally(() => deps.dispose())
    this.out(showRecovery(result))
    return result
  }
}
