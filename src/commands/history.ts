import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../base-command.js'
import {showHistory} from '../output/views/history.js'
import {filterHistory, type HistoryEvent} from '../core/history.js'

export interface HistoryResult {
  path: string
  events: HistoryEvent[]
}

export default class History extends MlflowctlCommand<typeof History> {
  static summary = 'Show the local ledger of deploy, rollback, upgrade, backup and restore events.'
  static description =
    'The ledger is MLFLOWCTL_DATA_DIR/history.jsonl (one JSON event per line), written by the commands that change a deployment.'
  static examples = [
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666',
    '<%= config.bin %> <%= command.id %> --json',
  ]
  static flags = {
    guid: Flags.string({summary: 'Only events for this content GUID.', env: 'MLFLOWCTL_GUID'}),
  }

  async run(): Promise<HistoryResult> {
    const ledger = this.deps.history(this.settings.dataDir)
    const events = filterHistory(await ledger.read(), this.flags.guid)
    if (events.length === 0)
      this.err(`No events recorded in ${ledger.path}${this.flags.guid ? ` for ${this.flags.guid}` : ''}.`)
    else this.out(showHistory(events))
    return {path: ledger.path, events}
  }
}
