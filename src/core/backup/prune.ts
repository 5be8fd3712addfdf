/** `backup prune`: which backups go, with the reason each one stays. Pure. */
import {UsageError} from '../../errors.js'
import {selectRetention, type RetentionPolicy} from './retention.js'

export interface PruneCandidate {
  id: string
  createdAt: string
  bytes: number
  verifiedAt?: string
}

export interface PrunePlan {
  keep: Array<{id: string; createdAt: string; reasons: string[]}>
  remove: Array<{id: string; createdAt: string; bytes: number}>
  freedBytes: number
}

/** @throws UsageError NO_RETENTION_POLICY when no --keep-* is given (it would delete everything but one). */
export function planPrune(backups: PruneCandidate[], policy: RetentionPolicy): PrunePlan {
  if (!Object.values(policy).some((n) => typeof n === 'number' && n > 0)) {
    throw new UsageError(
      'NO_RETENTION_POLICY',
      'Give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly (greater than 0).',
    )
  }
  const byId = new Map(backups.map((backup) => [backup.id, backup]))
  const decisions = selectRetention(
    backups.map((b) => ({id: b.id, createdAt: b.createdAt, verified: Boolean(b.verifiedAt)})),
    policy,
  )
  const keep = decisions
    .filter((d) => d.keep)
    .map((d) => ({id: d.id, createdAt: byId.get(d.id)!.createdAt, reasons: d.reasons}))
  const remove = decisions
    .filter((d) => !d.keep)
    .map((d) => ({id: d.id, createdAt: byId.get(d.id)!.createdAt, bytes: byId.get(d.id)!.bytes}))
  return {keep, remove, freedBytes: remove.reduce((sum, b) => sum + b.bytes, 0)}
}
