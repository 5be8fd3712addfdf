import {Args} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {devStatus, type DevStatusResult} from '../../core/dev.js'
import {ExitCode} from '../../errors.js'
import {showDevStatus} from '../../output/views/dev.js'

export default class DevStatus extends MlflowctlCommand<typeof DevStatus> {
  static summary = 'Show whether the local extension runs, its MLflow version and schema revision.'
  static description =
    'Exits 0 when the extension answers /health through the proxy, 6 when it is stopped or unhealthy.'
  static examples = ['<%= config.bin %> <%= command.id %> ./mlflow-server --json']
  static args = {dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', required: true})}

  async run(): Promise<DevStatusResult> {
    const deps = await this.deps.dev({
      cacheDir: this.settings.cacheDir,
      dataDir: this.settings.dataDir,
      env: process.env,
    })
    const result = await devStatus(deps, resolve(this.args.dir))
    this.setExitCode(result.running ? ExitCode.Ok : ExitCode.CheckFailed, {
      code: 'DEV_NOT_RUNNING',
      message: `The dev instance of ${result.bundleDir} is not running (${result.phase}).`,
      suggestions: [`mlflowctl dev up ${result.bundleDir}`, `Its log: ${result.logFile}`],
    })
    this.out(showDevStatus(result))
    return result
  }
}
