import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../base-command.js'
import {showRolledBack} from '../output/views/upgrade.js'
import {rollback, type RollbackResult} from '../core/rollback.js'
import {insecureFlag, targetFlags} from '../flags.js'
import {confirmer} from '../output/prompt.js'

export default class Rollback extends MlflowctlCommand<typeof Rollback> {
  static summary = 'Activate an earlier bundle, unless the database schema has moved past it.'
  static description = `Without --to, activates the bundle before the active one. When the database is at the schema revision that bundle was
verified at (from \`mlflowctl history\`), it is simply activated. When the schema moved on through migrations that
only add (new tables, nullable or defaulted columns, indexes: the migration catalog says which), the rollback is
instant: the content's MLFLOWCTL_SCHEMA_AHEAD_ALLOWED names the newer revision, the older extension checks that its
MLflow fits it and serves it as it is, and data logged after the upgrade stays. Any other move is refused (exit 6):
that MLflow would refuse the newer schema, so restore a backup instead. Needs --yes when it cannot prompt.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --yes',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --to 41 --json --yes',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({summary: 'GUID of the content.', required: true, env: 'MLFLOWCTL_GUID'}),
    to: Flags.string({
      summary: 'Bundle id to activate (default: the one before the active bundle).',
      env: 'MLFLOWCTL_TO',
    }),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.', env: 'MLFLOWCTL_YES'}),
    timeout: Flags.integer({
      summary: 'Seconds to wait for the activation task.',
      default: 900,
      min: 1,
      env: 'MLFLOWCTL_TIMEOUT',
    }),
  }

  async run(): Promise<RollbackResult> {
    const {server, apiKey} = this.connection('rollback')
    const deploy = this.deps.deploy({
      ...this.connection('rollback'),
      configDir: this.settings.configDir,
      dataDir: this.settings.dataDir,
    })
    const ledger = this.deps.history(this.settings.dataDir)
    const deps = {
      ...deploy,
      catalog: (await this.deps.catalog()).catalog,
      history: () => ledger.read(),
      confirm: confirmer({
        yes: this.flags.yes,
        json: this.jsonEnabled(),
        command: `mlflowctl rollback --guid ${this.flags.guid}`,
      }),
    }
    const result = await rollback(
      deps,
      {server, apiKey, guid: this.flags.guid, to: this.flags.to, timeoutMs: this.flags.timeout * 1000},
      this.tasks(),
    )
    this.out(showRolledBack(result))
    return result
  }
}
