import {Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {showRecovered} from '../../output/views/backup.js'
import {recoverRestore, type KeepChoice, type RecoverResult} from '../../core/backup/recover.js'
import {parseRestoreTarget} from '../../core/backup/restore.js'
import {redact} from '../../core/redact.js'

export default class BackupRecover extends MlflowctlCommand<typeof BackupRecover> {
  static summary = 'Settle what an interrupted restore left in a target.'
  static description = `A restore that was killed is finished (it had committed) or undone (it had not) by the next backup create or
restore that touches its target. When the target was written to after the kill (a server started on the restored data,
MLflow recreated a database), that run refuses with RECOVERY_CONFLICT and touches nothing. Choose then: --keep live keeps
what is in place (the restored data and what was written since), --keep previous puts the data from before the restore
back. The version not kept is moved to mlflowctl-kept-TIME/ beside it, never deleted. Without --keep, this does what the
next run would do and reports it. Takes the target's lock (exit 5, TARGET_LOCKED, while a restore works there).
Exit codes: 0 settled or nothing to settle, 2 bad flags, 5 locked, a conflict without --keep, an unusable path.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --target /srv/mlflow/data',
    '<%= config.bin %> <%= command.id %> --target sqlite:////srv/mlflow/mlflow.db --artifacts-to /srv/mlflow/artifacts --keep live --json',
  ]
  static flags = {
    target: Flags.string({
      summary: "The interrupted restore's target: an app-data directory, sqlite:////path/mlflow.db or postgresql://….",
      required: true,
      env: 'MLFLOWCTL_TARGET',
    }),
    'artifacts-to': Flags.string({
      summary: 'The --artifacts-to directory that restore used (SQLite and PostgreSQL targets).',
      env: 'MLFLOWCTL_ARTIFACTS_TO',
    }),
    keep: Flags.string({
      summary: 'Which version stays when the target was written to since: live (what is in place) or previous.',
      options: ['live', 'previous'],
      env: 'MLFLOWCTL_KEEP',
    }),
  }

  async run(): Promise<RecoverResult> {
    this.addUrlPassword(this.flags.target)
    const target = parseRestoreTarget(
      this.flags.target,
      (path) => resolve(path),
      (url) => redact(url),
    )
    const artifactsTo = this.flags['artifacts-to'] && resolve(this.flags['artifacts-to'])
    const deps = this.deps.restore({
      cacheDir: this.settings.cacheDir,
      dataDir: this.settings.dataDir,
      confirm: async () => false,
      onProgress: (line) => this.err(line),
      onWarning: (message) => this.warnUser(message),
    })
    const result = await recoverRestore(
      {lockTarget: deps.target.lock, recover: deps.target.recover},
      {target, artifactsTo, keep: this.flags.keep as KeepChoice | undefined},
    )
    this.out(showRecovered(result))
    return result
  }
}
