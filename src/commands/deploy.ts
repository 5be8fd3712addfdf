import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../base-command.js'
import {checkRetentionPolicy} from '../core/storage.js'
import {deploy, type DeployResult, type DraftsPolicy} from '../core/deploy.js'
import {parseEnvVars, secretValuesOf} from '../core/env-vars.js'
import {draftsFlag, envFlag, insecureFlag, targetFlags} from '../flags.js'
import {showDeploy} from '../output/views/deploy.js'

export default class Deploy extends MlflowctlCommand<typeof Deploy> {
  static summary = 'Deploy the extension bundle to Posit Connect, verify it, and activate it safely.'
  static description = `Creates the content (--new --name) or redeploys to the same GUID (--guid, or the deployment record
saved in DIR/.mlflowctl). Sets min_processes=1, the env vars (-E; values are never printed), MLFLOWCTL_OPS_TOKEN, the
OAuth association and the vanity path. On Connect 2025.06+ the bundle is deployed as a draft and verified at its
preview URL (/health, /version, an authenticated REST call, the schema revision) before it is activated (a hidden server
version means no draft, as rsconnect decides; --drafts overrides; if Connect does not route the preview's sub-paths, only
its root is verified before activation); if the activated bundle fails verification the previous one is re-activated.
A bundle whose app mode differs from the deployed item's is refused before anything changes (APP_MODE_CHANGED, exit
2): Connect cannot change it.`
  static examples = [
    '<%= config.bin %> <%= command.id %> ./mlflow-server --new --name mlflow --title "MLflow"',
    '<%= config.bin %> <%= command.id %> ./mlflow-server --guid 0b0e8e8e-1111-2222-3333-444455556666 -E MLFLOW_BACKEND_STORE_URI --dry-run',
  ]
  static args = {
    dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', default: '.', exists: true}),
  }
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    new: Flags.boolean({
      summary: 'Create new content instead of redeploying.',
      env: 'MLFLOWCTL_NEW',
      exclusive: ['guid'],
    }),
    name: Flags.string({summary: 'Name of the new content (with --new).', env: 'MLFLOWCTL_NAME'}),
    title: Flags.string({summary: 'Title of the content.', env: 'MLFLOWCTL_TITLE'}),
    guid: Flags.string({summary: 'GUID of the content to redeploy to.', env: 'MLFLOWCTL_GUID'}),
    env: envFlag,
    vanity: Flags.string({summary: 'Vanity path, for example mlflow/.', env: 'MLFLOWCTL_VANITY'}),
    'oauth-integration': Flags.string({
      summary: 'GUID of an OAuth integration to associate. Repeatable.',
      multiple: true,
      env: 'MLFLOWCTL_OAUTH_INTEGRATION',
    }),
    timeout: Flags.integer({
      summary: 'Seconds to wait for each deploy task.',
      default: 900,
      min: 1,
      env: 'MLFLOWCTL_TIMEOUT',
    }),
    'dry-run': Flags.boolean({
      char: 'n',
      summary: 'Print what would change (files, settings, env var names) and touch nothing.',
      env: 'MLFLOWCTL_DRY_RUN',
    }),
    drafts: draftsFlag,
    retention: Flags.string({
      summary:
        'Purge by itself, daily: MLFLOWCTL_RETENTION on the content, e.g. deleted=30d,traces=90d (keys: deleted, traces, orphans=GRACE, every).',
      env: 'MLFLOWCTL_RETENTION',
    }),
  }

  async run(): Promise<DeployResult> {
    const connection = this.connection('deploy')
    const env = parseEnvVars(this.flags.env, process.env)
    if (this.flags.retention) env.push({name: 'MLFLOWCTL_RETENTION', value: checkRetentionPolicy(this.flags.retention)})
    this.addSecrets(...secretValuesOf(env))
    const deps = this.deps.deploy({...connection, configDir: this.settings.configDir, dataDir: this.settings.dataDir})
    const options = {
      dir: resolve(this.args.dir),
      server: connection.server,
      apiKey: connection.apiKey,
      createNew: this.flags.new,
      name: this.flags.name,
      title: this.flags.title,
      guid: this.flags.guid,
      env,
      vanity: this.flags.vanity,
      oauthIntegrations: this.flags['oauth-integration'] ?? [],
      timeoutMs: this.flags.timeout * 1000,
      dryRun: this.flags['dry-run'],
      drafts: this.flags.drafts as DraftsPolicy,
    }
    const result = await deploy(deps, options, this.tasks())
    for (const warning of result.warnings ?? []) this.warnUser(warning)
    this.out(showDeploy(result))
    return result
  }
}
