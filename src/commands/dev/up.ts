import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand, type SuccessEnvelope} from '../../base-command.js'
import {devUp, type DevUpResult} from '../../core/dev.js'
import {parseEnvVars, secretValuesOf} from '../../core/env-vars.js'
import {envFlag} from '../../flags.js'
import {showDevUp} from '../../output/views/dev.js'
import {CLI_NAME, localInvocation} from '../../output/invocation.js'

export default class DevUp extends MlflowctlCommand<typeof DevUp> {
  static summary = 'Run a rendered bundle on this machine the way Connect would.'
  static description = `Builds (or reuses) a venv with the bundle's pinned requirements, cached by their hash under
MLFLOWCTL_CACHE_DIR; starts the extension with CONNECT_CONTENT_DATA_DIR pointing at a data dir that survives
down/up; and serves it at http://127.0.0.1:PORT/content/<guid>/ behind a proxy that requires the printed key, as
"Authorization: Key <key>" (Connect's scheme) or "Bearer <key>" (what the MLflow client sends).`
  static examples = [
    '<%= config.bin %> <%= command.id %> ./mlflow-server',
    '<%= config.bin %> <%= command.id %> ./mlflow-server --port 5055 --env MLFLOW_BACKEND_STORE_URI --env MLFLOW_ARTIFACTS_DESTINATION=/srv/mlflow',
  ]
  static args = {
    dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', required: true, exists: true}),
  }
  static flags = {
    port: Flags.integer({
      summary: 'Port of the local Connect-style proxy (default: the last one used, else a free one).',
      min: 1,
      max: 65_535,
      env: 'MLFLOWCTL_PORT',
    }),
    env: envFlag,
    timeout: Flags.integer({
      summary: 'Seconds to wait for /health once the venv is ready.',
      default: 180,
      min: 1,
      env: 'MLFLOWCTL_TIMEOUT',
    }),
  }

  async run(): Promise<DevUpResult> {
    const env = parseEnvVars(this.flags.env, process.env)
    this.addSecrets(...secretValuesOf(env))
    const deps = await this.deps.dev({
      cacheDir: this.settings.cacheDir,
      dataDir: this.settings.dataDir,
      env: process.env,
    })
    const result = await devUp(
      deps,
      {bundleDir: resolve(this.args.dir), port: this.flags.port, env, timeoutMs: this.flags.timeout * 1000},
      this.tasks(),
    )
    this.outIncludingSecret(showDevUp(result))
    const {prefix} = localInvocation(this.config)
    if (prefix !== CLI_NAME)
      this.err(
        `\n${CLI_NAME} is not on PATH, so the hints above say "${prefix}". To type ${CLI_NAME}: run npm link in its clone.`,
      )
    return result
  }

  /**
   * The one rule for the dev key (README "Local runs: dev"): dev up prints it, in text and JSON alike, because it is
   * the credential the user needs for this loopback server; no other command prints it.
   */
  protected toSuccessJson(result: unknown): SuccessEnvelope<unknown> {
    const envelope = super.toSuccessJson(result)
    const {apiKey, uiUrl} = result as DevUpResult
    return {...envelope, result: {...(envelope.result as object), apiKey, uiUrl}}
  }
}
