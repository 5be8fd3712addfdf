/** `replica status`: what the extension reports about its replication, and what the replica it names holds. */
import type {OpsStatus} from './extension-contract.js'
import {summarizeReplica, type ReplicaContents, type ReplicaSummary} from './replica.js'
import {UsageError} from '../errors.js'

export interface ReplicaStatusDeps {
  /** The extension's ops status (GET /_mlflowctl/status). */
  opsStatus(guid: string): Promise<OpsStatus>
  /** What the replica at `url` holds (a directory or an object-store URL). */
  readReplica(url: string): Promise<ReplicaContents>
  /** Seconds since the epoch. */
  now(): number
}

export interface ReplicaStatusResult {
  url: string | null
  /** What the extension reports (with a GUID): role, generation, position, lag, errors. */
  extension?: NonNullable<OpsStatus['replica']> | null
  /** What the replica holds (when it can be read from here): generations, the window a restore reaches, size. */
  contents?: ReplicaSummary
  /** Why the contents could not be read from here (with a GUID only; with a replica URL the command fails instead). */
  contentsError?: string
}

/**
 * Exactly one of `guid` and `replica`. With a GUID, a replica that cannot be read from here is reported, not fatal:
 * the extension's own view is the answer. @throws UsageError REPLICA_OFF when the extension does not replicate
 */
export async function replicaStatus(
  deps: ReplicaStatusDeps,
  options: {guid?: string; replica?: string},
): Promise<{result: ReplicaStatusResult; warnings: string[]}> {
  const result: ReplicaStatusResult = {url: options.replica ?? null}
  const warnings: string[] = []
  if (options.guid) {
    result.extension = (await deps.opsStatus(options.guid)).replica ?? null
    if (!result.extension)
      throw new UsageError('REPLICA_OFF', `${options.guid} does not replicate (MLFLOWCTL_REPLICA_URL is not set).`, {
        suggestions: ['Set MLFLOWCTL_REPLICA_URL on the content (a directory, s3://, wasbs:// or gs://) and redeploy.'],
      })
    result.url = result.extension.url
  }
  try {
    const contents = await deps.readReplica(result.url!)
    result.contents = summarizeReplica(contents.generations, contents.sizes, deps.now())
    for (const sidecar of contents.damaged) warnings.push(sidecar.why.replace(/; nothing was restored\.$/, '.'))
  } catch (error) {
    if (!options.guid) throw error
    result.contentsError = (error as Error).message
  }
  return {result, warnings}
}
