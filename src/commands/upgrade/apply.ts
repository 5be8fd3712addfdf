import {Flags} from '@oclif/core'

import {showUpgraded} from '../../output/views/upgrade.js'
import {applyUpgrade, type ApplyResult} from '../../core/upgrade-apply.js'
import {readSavedPlan} from '../../core/upgrade-plan.js'
import {UpgradeCommand, upgradeFlags} from '../../upgrade-command.js'

export default class UpgradeApply extends UpgradeCommand<typeof UpgradeApply> {
  static summary = 'Upgrade a deployment to another MLflow release, rolling back on any failure.'
  static description = `Re-reads the deployment (a --plan-file must still match it: its fingerprint), takes the upgrade lock, backs up
the data and verifies the backup, bumps the active bundle to the target and deploys it to the same GUID (draft,
verification at the preview URL, activation, verification: /version, the REST API and the schema revision, so the
migrations have run once). On any failure after the backup the data is restored from it and the previous bundle
serves again. Each step is written to an intent record (DATA_DIR/upgrades/GUID.json) before the next starts, so an
upgrade whose process dies is finished by \`upgrade resume\` or undone by \`upgrade abort\` (see \`upgrade status\`); until
then a new apply is refused. Everything is recorded in the history ledger (mlflowctl history). External storage
needs --db for the backup and a rollback. Exit codes: 0 upgraded (or nothing to do), 2 bad flags or declined,
3 configuration, 4 a wrong key or ops token, 5 Connect failed, 6 blocked, a stale plan, an unfinished upgrade, or
rolled back after a failure.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --to 3.17.2 --repo /backups/mlflow --yes',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --plan-file upgrade.json --db postgresql://mlflow@db/mlflow --json --yes',
  ]
  static flags = {
    ...upgradeFlags,
    to: Flags.string({summary: 'Target MLflow release.', exactlyOne: ['to', 'plan-file'], env: 'MLFLOWCTL_TO'}),
    'plan-file': Flags.file({
      summary: 'A plan saved by upgrade plan --plan-file.',
      exists: true,
      exactlyOne: ['to', 'plan-file'],
      env: 'MLFLOWCTL_PLAN_FILE',
    }),
  }

  async run(): Promise<ApplyResult> {
    const guid = this.guid()
    const savedPlan = this.flags['plan-file']
      ? readSavedPlan(await this.deps.json.read(this.flags['plan-file']), this.flags['plan-file'])
      : undefined
    const {deps, server, runner} = await this.upgradeDeps('upgrade apply')
    const result = await applyUpgrade(deps, {server, guid, to: this.flags.to, savedPlan}, runner).finally(() =>
      deps.dispose(),
    )
    this.out(showUpgraded(guid, result))
    return result
  }
}
