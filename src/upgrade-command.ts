import {Flags, type Command} from '@oclif/core'

import {MlflowctlCommand} from './base-command.js'
import {parseContentGuid} from './core/backup/locations.js'
import type {DraftsPolicy} from './core/deploy.js'
import {draftsFlag, insecureFlag, targetFlags} from './flags.js'
import {confirmer} from './output/prompt.js'

/** The deployment an upgrade command works on. */
export const deploymentFlags = {
  ...targetFlags,
  insecure: insecureFlag,
  guid: Flags.string({summary: 'GUID of the deployment.', required: true, env: 'MLFLOWCTL_GUID'}),
}

/** The flags `upgrade apply`, `resume` and `abort` share: the deployment, its backup repository and database. */
export const upgradeFlags = {
  ...deploymentFlags,
  repo: Flags.string({
    summary: 'Backup repository (default: the one the upgrade recorded, else a directory under the data dir).',
    env: 'MLFLOWCTL_REPO',
  }),
  db: Flags.string({summary: 'The database URL, for external storage (postgresql://…).', env: 'MLFLOWCTL_DB'}),
  timeout: Flags.integer({
    summary: 'Seconds to wait for each deploy task.',
    default: 900,
    min: 1,
    env: 'MLFLOWCTL_TIMEOUT',
  }),
  drafts: draftsFlag,
  yes: Flags.boolean({char: 'y', summary: 'Do not ask before changing the deployment.', env: 'MLFLOWCTL_YES'}),
  'passphrase-file': Flags.file({
    summary: 'The backup passphrase in this file (or MLFLOWCTL_BACKUP_PASSPHRASE).',
    env: 'MLFLOWCTL_PASSPHRASE_FILE',
  }),
}

/** A command that runs the steps of an upgrade against one deployment (core/upgrade-apply.ts's ApplyDeps). */
export abstract class UpgradeCommand<T extends typeof Command> extends MlflowctlCommand<T> {
  protected get upgradeFlagValues() {
    // `upgrade status` has only the deployment's flags: it reads, so the others keep their defaults.
    return this.flags as unknown as {
      guid: string
      repo?: string
      db?: string
      timeout?: number
      drafts?: string
      yes?: boolean
      'passphrase-file'?: string
    }
  }

  protected guid(): string {
    return parseContentGuid(this.upgradeFlagValues.guid, '--guid')
  }

  /** The steps, composed for this deployment; the caller disposes of them. */
  protected async upgradeDeps(purpose: string) {
    const flags = this.upgradeFlagValues
    const {configDir, dataDir, cacheDir} = this.settings
    const connection = this.connection(purpose)
    this.addUrlPassword(flags.db)
    const runner = this.tasks()
    const deps = await this.deps.upgrade({
      ...connection,
      configDir,
      dataDir,
      cacheDir,
      transfer: this.connectTransfer(),
      repo: flags.repo,
      databaseUrl: flags.db,
      passphrase: await this.deps.passphrase(flags['passphrase-file']),
      toolVersion: this.config.version,
      timeoutMs: (flags.timeout ?? 900) * 1000,
      drafts: (flags.drafts ?? 'auto') as DraftsPolicy,
      runner,
      onProgress: (line) => this.err(line),
      onWarning: (message) => this.warnUser(message),
    })
    deps.confirm = confirmer({
      yes: flags.yes ?? false,
      json: this.jsonEnabled(),
      command: `mlflowctl ${purpose} --guid ${flags.guid} …`,
    })
    return {deps, server: connection.server, runner}
  }
}
