import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {showUpgraded} from '../../output/views/upgrade.js'
import {parseContentGuid} from '../../core/backup/locations.js'
import {applyUpgrade, type ApplyResult} from '../../core/upgrade-apply.js'
import type {DraftsPolicy} from '../../core/deploy.js'
import {readSavedPlan} from '../../core/upgrade-plan.js'
import {draftsFlag, insecureFlag, targetFlags} from '../../flags.js'
import {confirmer} from '../../output/prompt.js'

export default class UpgradeApply extends MlflowctlCommand<typeof UpgradeApply> {
  static summary = 'Upgrade a deployment to another MLflow release, rolling back on any failure.'
  static description = `Re-reads the deployment (a --plan-file must still match it: its fingerprint), takes the upgrade lock, backs up
the data and verifies the backup, bumps the active bundle to the target and deploys it to the same GUID (draft,
verification at the preview URL, activation, verification: /version, the REST API and the schema revision, so the
migrations have run once). On any failure after the backup the data is restored from it and the previous bundle
serves again. Everything is recorded in the history ledger (mlflowctl history). External storage needs --db for
the backup and a rollback. Exit codes: 0 upgraded (or nothing to do), 2 bad flags or declined, 3 configuration,
4 a wrong key or ops token, 5 Connect failed, 6 blocked, a stale plan, or rolled back after a failure.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --to 3.17.2 --repo /backups/mlflow --yes',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --plan-file upgrade.json --db postgresql://mlflow@db/mlflow --json --yes',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({summary: 'GUID of the deployment.', required: true, env: 'MLFLOWCTL_GUID'}),
    to: Flags.string({summary: 'Target MLflow release.', exactlyOne: ['to', 'plan-file'], env: 'MLFLOWCTL_TO'}),
    'plan-file': Flags.file({
      summary: 'A plan saved by upgrade plan --plan-file.',
      exists: true,
      exactlyOne: ['to', 'plan-file'],
      env: 'MLFLOWCTL_PLAN_FILE',
    }),
    repo: Flags.string({
      summary: 'Backup repository (default: a directory under the data dir).',
      env: 'MLFLOWCTL_REPO',
    }),
    db: Flags.string({summary: 'The database URL, for external storage (postgresql://…).', env: 'MLFLOWCTL_DB'}),
    timeout: Flags.integer({
      summary: 'Seconds to wait for each deploy task.',
      default: 900,
      min: 1,
      env: 'MLFLOWCTL_TIMEOUT',
    }),
    drafts: draftsFlag,
    yes: Flags.boolean({char: 'y', summary: 'Do not ask before upgrading.', env: 'MLFLOWCTL_YES'}),
    'passphrase-file': Flags.file({
      summary: 'Encrypt the backup with the passphrase in this file (or MLFLOWCTL_BACKUP_PASSPHRASE).',
      env: 'MLFLOWCTL_PASSPHRASE_FILE',
    }),
  }

  async run(): Promise<ApplyResult> {
    const {configDir, dataDir, cacheDir} = this.settings
    const connection = this.connection('upgrade apply')
    this.addUrlPassword(this.flags.db)
    const guid = parseContentGuid(this.flags.guid, '--guid')
    const savedPlan = this.flags['plan-file']
      ? readSavedPlan(await this.deps.json.read(this.flags['plan-file']), this.flags['plan-file'])
      : undefined
    const transfer = this.connectTransfer()
    const runner = this.tasks()
    const deps = await this.deps.upgrade({
      ...connection,
      configDir,
      dataDir,
      cacheDir,
      transfer,
      repo: this.flags.repo,
      databaseUrl: this.flags.db,
      passphrase: await this.deps.passphrase(this.flags['passphrase-file']),
      toolVersion: this.config.version,
      timeoutMs: this.flags.timeout * 1000,
      drafts: this.flags.drafts as DraftsPolicy,
      runner,
      onProgress: (line) => this.err(line),
      onWarning: (message) => this.warnUser(message),
    })
    deps.confirm = confirmer({
      yes: this.flags.yes,
      json: this.jsonEnabled(),
      command: `mlflowctl upgrade apply --guid ${guid} …`,
    })
    const result = await applyUpgrade(
      deps,
      {server: connection.server, guid, to: this.flags.to, savedPlan},
      runner,
    ).finally(() => deps.dispose())
    this.out(showUpgraded(guid, result))
    return result
  }
}
