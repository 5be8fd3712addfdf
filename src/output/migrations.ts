import type {PendingRevision} from '../core/catalog.js'

const rows = (n?: number) => (n === undefined ? 'size unknown' : `≈${n.toLocaleString('en-US')} rows`)

/** The pending slice, one line per revision, heavy and dialect-specific ones marked. */
export function formatPending(pending: PendingRevision[]): string[] {
  if (pending.length === 0) return []
  return [
    `Pending (${pending.length}, in order):`,
    ...pending.map((p) => {
      const marks = [
        p.heavy
          ? `HEAVY: ${p.heavy}${p.tables?.length ? ` (${p.tables.map((t) => `${t.table} ${rows(t.rows)}`).join(', ')})` : ''}`
          : '',
        p.dialects.length ? `dialects: ${p.dialects.join(', ')}` : '',
      ].filter(Boolean)
      return `  ${p.revision}  ${p.message} [${p.firstRelease}]${marks.length ? `\n      ${marks.join('; ')}` : ''}`
    }),
  ]
}

/** The dry run's cost line: heavy steps and the rows they touch, from table statistics. */
export function formatCost(estimate: {
  heavySteps: number
  rowsTouched: number
  tables: Record<string, number>
}): string[] {
  if (estimate.heavySteps === 0) return []
  const tables = Object.entries(estimate.tables)
  // An empty or never-analysed database has no statistics; saying "≈0 rows" would claim more than is known.
  if (tables.length === 0)
    return [
      `Cost: ${estimate.heavySteps} heavy steps; the tables they touch have no statistics (empty or not analysed).`,
    ]
  return [
    `Cost: ${estimate.heavySteps} heavy steps over ${rows(estimate.rowsTouched)} (${tables.map(([table, n]) => `${table} ${n.toLocaleString('en-US')}`).join(', ')}).`,
  ]
}
