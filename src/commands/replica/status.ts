import {Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {insecureFlag, targetFlags} from '../../flags.js'
import {isObjectStoreUrl} from '../../core/artifact-url.js'
import {summarizeReplica, type ReplicaSummary} from '../../core/replica.js'
import type {OpsStatus} from '../../core/extension-contract.js'
import {UsageError} from '../../errors.js'
import {openReplica, readReplica} from '../../adapters/backup/replica-source.js'
import {connectOpsStatus} from '../../adapters/backup/connect-transfer.js'
import {showReplicaStatus} from '../../output/views/replica.js'

export interface ReplicaStatusResult {
  url: string | null
  /** What the extension reports (with --guid): role, generation, position, lag, errors. */
  extension?: NonNullable<OpsStatus['replica']> | null
  /** What the replica holds (when it can be read from here): generations, the window a restore reaches, size. */
  contents?: ReplicaSummary
  /** Why the contents could not be read from here (with --guid only; with --replica the command fails instead). */
  contentsError?: string
}

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
    const result: ReplicaStatusResult = {url: this.flags.replica ?? null}
    if (this.flags.guid) {
      this.err(`Asking ${this.flags.guid} for its replication status...`)
      result.extension = (await connectOpsStatus(this.connectTransfer(), this.flags.guid)).replica ?? null
      if (!result.extension)
        throw new UsageError(
          'REPLICA_OFF',
          `${this.flags.guid} does not replicate (MLFLOWCTL_REPLICA_URL is not set).`,
          {
            suggestions: [
              'Set MLFLOWCTL_REPLICA_URL on the content (a directory, s3://, wasbs:// or gs://) and redeploy.',
            ],
          },
        )
      result.url = result.extension.url
    }
    const url = result.url!
    try {
      const reader = await openReplica(isObjectStoreUrl(url) ? url : resolve(url))
      const contents = await readReplica(reader)
      result.contents = summarizeReplica(contents.generations, contents.sizes, Date.now() / 1000)
      for (const sidecar of contents.damaged) this.warnUser(sidecar.why.replace(/; nothing was restored\.$/, '.'))
    } catch (error) {
      if (!this.flags.guid) throw error
      result.contentsError = (error as Error).message
    }
    this.out(showReplicaStatus(result))
    return result
  }
}
