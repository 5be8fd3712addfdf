import type {PendingRevision} from '../core/catalog.js'

const rows = (n?: number) => (n === undefined ? 'size unknown' : `≈${n.toLocaleString('en-US')} rows`)

/** The pending slice, one line per revision, heavy and dialect-specific ones marked. */
export function formatPending(pending: PendingRevision[]): string[] {
  if (pending.length === 0) return []
  return [
    `Pending (${pending.length}, in order):`,
    ...pending.map((p) => {
      const marks = [p.heavy ? `HEAVY: ${p.heavy}${p.tables?.length ? ` (${p.tables.map((t) => `${t.table} ${rows(t.rows)}`).join(', ')})` : ''}` : '', p.dialects.length ? `dialects: ${p.dialects.join(', ')}` : ''].filter(Boolean)
      return `  ${p.revision}  ${p.message} [${p.firstRelease}]${marks.length ? `\n      ${marks.join('; ')}` : ''}`
    }),
  ]
}
