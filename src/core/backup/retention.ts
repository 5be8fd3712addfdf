/**
 * Which backups `backup prune` keeps, restic-style: the newest N, plus the newest backup of each of the
 * last N days, weeks (ISO, Monday first) and months, in UTC. The newest verified backup is always kept.
 * Pure: the clock is not needed, buckets come from the backups' own times.
 */
export interface RetentionPolicy {
  keepLast?: number
  keepDaily?: number
  keepWeekly?: number
  keepMonthly?: number
}

export interface RetentionCandidate {
  id: string
  createdAt: string
  verified: boolean
}

export interface RetentionDecision {
  id: string
  keep: boolean
  reasons: string[]
}

function isoWeek(date: Date): string {
  const day = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()))
  const weekday = day.getUTCDay() || 7
  day.setUTCDate(day.getUTCDate() + 4 - weekday) // the Thursday of this week decides its year
  const yearStart = new Date(Date.UTC(day.getUTCFullYear(), 0, 1))
  const week = Math.ceil(((day.getTime() - yearStart.getTime()) / 86_400_000 + 1) / 7)
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, '0')}`
}

const BUCKETS: Array<[keyof RetentionPolicy, string, (date: Date) => string]> = [
  ['keepDaily', 'daily', (date) => date.toISOString().slice(0, 10)],
  ['keepWeekly', 'weekly', isoWeek],
  ['keepMonthly', 'monthly', (date) => date.toISOString().slice(0, 7)],
]

/** Decisions, newest first. A policy that keeps nothing at all is refused by the caller, not here. */
export function selectRetention(backups: RetentionCandidate[], policy: RetentionPolicy): RetentionDecision[] {
  const sorted = [...backups].sort((a, b) => b.createdAt.localeCompare(a.createdAt))
  const decisions = sorted.map((backup) => ({id: backup.id, keep: false, reasons: [] as string[]}))
  sorted.slice(0, policy.keepLast ?? 0).forEach((_, index) => decisions[index].reasons.push(`last ${policy.keepLast}`))
  for (const [key, label, bucketOf] of BUCKETS) {
    const limit = policy[key] ?? 0
    const seen = new Set<string>()
    sorted.forEach((backup, index) => {
      const bucket = bucketOf(new Date(backup.createdAt))
      if (seen.has(bucket) || seen.size >= limit) return
      seen.add(bucket)
      decisions[index].reasons.push(`${label} ${bucket}`)
    })
  }
  const newestVerified = sorted.findIndex((backup) => backup.verified)
  if (newestVerified >= 0) decisions[newestVerified].reasons.push('newest verified')
  for (const decision of decisions) decision.keep = decision.reasons.length > 0
  return decisions
}
