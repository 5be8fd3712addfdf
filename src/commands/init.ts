import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../base-command.js'
import {REPLICA_STORES, STORAGE_MODES, type ReplicaStore, type StorageMode} from '../core/bundle.js'
import {initBundle, type InitResult} from '../core/init.js'
import {APP_MODES, NEWEST_KNOWN_MLFLOW, type AppMode} from '../core/versions.js'
import {showInit} from '../output/views/init.js'

export default class Init extends MlflowctlCommand<typeof Init> {
  static summary = 'Render a deployable MLflow extension bundle into a directory.'
  static description = `Writes app.py, the extension package, a pinned requirements.txt, mlflowctl.json and a Connect
manifest.json (app mode and entrypoint follow from the MLflow version: python-fastapi for 3.3+, python-api before;
--app-mode python-api pins it for 3.3+, for content first deployed as python-api: Connect cannot change a deployed item's
app mode, and the extension then serves the same FastAPI app through an ASGI-to-WSGI bridge).
Refuses a non-empty directory unless --force. Honours MLFLOWCTL_PYTHON (the interpreter whose version is recorded).`
  static examples = [
    '<%= config.bin %> <%= command.id %> ./mlflow-server --storage local',
    `<%= config.bin %> <%= command.id %> ./mlflow-server --storage custom --mlflow-version ${NEWEST_KNOWN_MLFLOW} --force`,
  ]
  static args = {dir: Args.directory({description: 'Directory to render the bundle into.', required: true})}
  static flags = {
    storage: Flags.string({
      summary: 'Storage mode of the extension.',
      options: [...STORAGE_MODES],
      default: 'local',
      env: 'MLFLOWCTL_STORAGE',
    }),
    'mlflow-version': Flags.string({
      summary: `MLflow version to pin (default: newest known, ${NEWEST_KNOWN_MLFLOW}).`,
      env: 'MLFLOWCTL_MLFLOW_VERSION',
    }),
    'app-mode': Flags.string({
      summary: 'Pin the app mode (default: python-fastapi for MLflow 3.3+, python-api before).',
      options: [...APP_MODES],
      env: 'MLFLOWCTL_APP_MODE',
    }),
    'replica-store': Flags.string({
      summary:
        'Local storage replicated to this object store (MLFLOWCTL_REPLICA_URL s3://, wasbs:// or gs://): adds its SDK. A directory replica needs nothing.',
      options: [...REPLICA_STORES],
      env: 'MLFLOWCTL_REPLICA_STORE',
    }),
    force: Flags.boolean({summary: 'Overwrite the bundle files in a non-empty directory.', env: 'MLFLOWCTL_FORCE'}),
  }

  async run(): Promise<InitResult> {
    const dir = resolve(this.args.dir)
    const result = await initBundle(await this.deps.init(), {
      dir,
      storage: this.flags.storage as StorageMode,
      mlflowVersion: this.flags['mlflow-version'],
      appMode: this.flags['app-mode'] as AppMode | undefined,
      replicaStore: this.flags['replica-store'] as ReplicaStore | undefined,
      force: this.flags.force,
      toolVersion: this.config.version,
    })
    for (const warning of result.warnings) this.warnUser(warning)
    if (!this.jsonEnabled()) this.out(showInit(result))
    return result
  }
}
