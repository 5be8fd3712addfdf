import {Flags} from '@oclif/core'
import {join} from 'node:path'

import {MlflowctlCommand} from '../base-command.js'
import {insecureFlag, targetFlags} from '../flags.js'

export interface ClientEnvResult {
  guid: string
  trackingUri: string
  install: string
  env: Record<string, string>
}

export default class ClientEnv extends MlflowctlCommand<typeof ClientEnv> {
  static summary = 'Print the environment an MLflow client needs for a deployed server.'
  static description = `The MLflow client sends MLFLOW_TRACKING_TOKEN as "Bearer", while Connect documents "Key"; the printed
setup installs the mlflow-connect-auth plugin (templates/client-auth) that sends "Authorization: Key". The API key
itself is never printed: the lines refer to $CONNECT_API_KEY.`
  static examples = ['eval "$(<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666)"']
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({summary: 'GUID of the content.', required: true, env: 'MLFLOWCTL_GUID'}),
  }

  async run(): Promise<ClientEnvResult> {
    const client = await this.deps.connect(this.connection('client-env'))
    const content = await client.getContent(this.flags.guid)
    const trackingUri = (content.content_url ?? `${client.server.href}content/${content.guid}/`).replace(/\/+$/, '')
    const install = `pip install '${join(await this.deps.packageRoot(), 'templates', 'client-auth')}'`
    const env = {
      MLFLOW_TRACKING_URI: trackingUri,
      MLFLOW_TRACKING_AUTH: 'connect-api-key',
      CONNECT_API_KEY: '${CONNECT_API_KEY:?set your Connect API key}',
    }
    this.out([`# ${install}`, ...Object.entries(env).map(([name, value]) => `export ${name}="${value}"`)].join('\n'))
    return {guid: content.guid, trackingUri, install, env}
  }
}
