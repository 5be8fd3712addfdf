import type {InitResult} from '../../core/init.js'
import {keyValues} from '../table.js'

export function showInit(result: InitResult): string {
  const envLine =
    result.requiredEnv.length > 0 ? result.requiredEnv.join(', ') : 'none (Connect provides CONNECT_CONTENT_DATA_DIR)'
  return [
    `Rendered the MLflow extension into ${result.dir}`,
    keyValues([
      ['MLflow', result.mlflowVersion],
      ['Storage', result.storage],
      ['App mode', `${result.appMode} (${result.entrypoint})`],
      ['Python', `${result.pythonRequires} (recorded ${result.pythonVersion})`],
      ['Env vars to set', envLine],
      ...(result.optionalEnv.length > 0
        ? [['Optional env vars', result.optionalEnv.join(', ')] as [string, string]]
        : []),
      ...(result.needsOAuthIntegration
        ? [
            ['Credentials', 'a service-account OAuth integration on Connect (or MLFLOWCTL_CREDENTIALS=ambient)'] as [
              string,
              string,
            ],
          ]
        : []),
      ['Files', String(result.files.length + 1)],
    ]),
    '',
    result.needsOAuthIntegration
      ? `Next: mlflowctl deploy ${result.dir} --new --name mlflow --oauth-integration GUID ${result.requiredEnv.map((name) => `-E ${name}=…`).join(' ')}`
      : `Next: mlflowctl dev up ${result.dir}   (run it here), or mlflowctl bundle ${result.dir} --output bundle.tar.gz`,
  ].join('\n')
}
