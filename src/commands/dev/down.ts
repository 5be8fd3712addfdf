import {Args} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {devDown, type DevDownResult} from '../../core/dev.js'
import {showDevDown} from '../../output/views/dev.js'

export default class DevDown extends MlflowctlCommand<typeof DevDown> {
  static summary = 'Stop the local extension started by `dev up`; its data is kept.'
  static examples = ['<%= config.bin %> <%= command.id %> ./mlflow-server']
  static args = {dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', required: true})}

  async run(): Promise<DevDownResult> {
    const deps = await this.deps.dev({
      cacheDir: this.settings.cacheDir,
      dataDir: this.settings.dataDir,
      env: process.env,
    })
    const result = await devDown(deps, resolve(this.args.dir))
    this.out(showDevDown(result))
    return result
  }
}
