import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {insecureFlag, targetFlags} from '../../flags.js'
import {replicaStatus, type ReplicaStatusResult} from '../../core/replica-status.js'
import {showReplicaStatus} from '../../output/views/replica.js'

export default class ReplicaStatus extends MlflowctlCommand<typeof ReplicaStatus> {
  static summary = 'Show a replica: its generations, the window a restore reaches, lag and size.'
  static description = `With --replica: reads the replica (a directory, s3://, wasbs:// or gs://; credentials as for backup
repositories). With --guid: asks the deployed extension (its ops status: role, generation, WAL position, lag, last
error) and reads the replica it names when it can be reached from here. Restore from it with
\`mlflowctl backup restore --from-replica URL [--at TIME] --to TARGET\`.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --replica s3://mlflow-replicas/team-a',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --json',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({
      summary: 'The deployed extension to ask.',
      env: 'MLFLOWCTL_GUID',
      exactlyOne: ['guid', 'replica'],
    }),
    replica: Flags.string({
      summary: "The replica to read: a directory, s3://…, wasbs://… or gs://… (the extension's MLFLOWCTL_REPLICA_URL).",
      env: 'MLFLOWCTL_REPLICA',
    }),
  }

  async run(): Promise<ReplicaStatusResult> {
    if (this.flags.guid) this.err(`Asking ${this.flags.guid} for its replication status...`)
    const transfer = this.connectTransfer()
    const {result, warnings} = await replicaStatus(
      {
        opsStatus: (guid) => this.deps.opsStatus(transfer, guid),
        readReplica: (url) => this.deps.readReplica(url),
        now: () => Date.now() / 1000,
      },
      {guid: this.flags.guid, replica: this.flags.replica},
    )
    for (const warning of warnings) this.warnUser(warning)
    this.out(showReplicaStatus(result))
    return result
  }
}
