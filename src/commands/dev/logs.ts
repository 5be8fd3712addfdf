import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'

export interface DevLogsResult {
  logFile: string
  lines: string[]
}

export default class DevLogs extends MlflowctlCommand<typeof DevLogs> {
  static summary = 'Print the log of the local extension (its startup and migration lines are JSON).'
  static examples = ['<%= config.bin %> <%= command.id %> ./mlflow-server --lines 50']
  static args = {dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', required: true})}
  static flags = {
    lines: Flags.integer({summary: 'How many lines from the end.', default: 200, min: 1, env: 'MLFLOWCTL_LINES'}),
  }

  async run(): Promise<DevLogsResult> {
    const deps = await this.deps.dev({
      cacheDir: this.settings.cacheDir,
      dataDir: this.settings.dataDir,
      env: process.env,
    })
    const paths = deps.paths(resolve(this.args.dir))
    const text = await deps.logTail(paths, this.flags.lines)
    if (!text) this.err(`No log yet at ${paths.log}; start the extension with: mlflowctl dev up ${this.args.dir}`)
    else this.out(text)
    return {logFile: paths.log, lines: text ? text.split('\n') : []}
  }
}
