/**
 * How long pending schema migrations will take, from the live row counts: each heavy revision's operations (an
 * index build, a table rebuild, a pass through the ORM: catalog/overlay.json "costs") times the seconds per row
 * measured for that kind of operation (catalog/migration-costs.json, written by bench/migration-cost.mjs), plus a
 * measured constant per light revision. Pure.
 */

export type MigrationOp = 'index' | 'rebuild' | 'scan'

export interface MigrationCosts {
  measuredAt: string
  machine: string
  /** Measured on SQLite; other dialects reuse these numbers, and the estimate says so. */
  sqlite: {
    /** Starting Python and importing MLflow and alembic, once. */
    fixedSeconds?: number
    perMigrationSeconds: number
    perRowSeconds: Partial<Record<MigrationOp, number>>
  }
}

export type RevisionCosts = Record<string, Array<{op: MigrationOp; table: string}> | string>

export interface MigrationEstimate {
  seconds: number
  /** The heavy parts, largest first. */
  heaviest: Array<{revision: string; op: MigrationOp; table: string; rows: number; seconds: number}>
  /** Whether the numbers were measured on this dialect (SQLite), or borrowed from it. */
  measured: boolean
  basis: string
}

export function estimateMigration(
  pending: string[],
  revisionCosts: RevisionCosts,
  costs: MigrationCosts,
  rowEstimates: Record<string, number>,
  dialect: string,
): MigrationEstimate {
  const model = costs.sqlite
  const heaviest: MigrationEstimate['heaviest'] = []
  const unmeasured = new Set<MigrationOp>()
  let seconds = model.fixedSeconds ?? 0
  for (const revision of pending) {
    seconds += model.perMigrationSeconds
    const ops = revisionCosts[revision]
    if (!Array.isArray(ops)) continue
    for (const {op, table} of ops) {
      const rows = rowEstimates[table] ?? 0
      if (rows > 0 && model.perRowSeconds[op] === undefined) unmeasured.add(op)
      const cost = rows * (model.perRowSeconds[op] ?? 0)
      seconds += cost
      if (rows > 0) heaviest.push({revision, op, table, rows, seconds: cost})
    }
  }
  heaviest.sort((a, b) => b.seconds - a.seconds)
  const measured = dialect === 'sqlite'
  return {
    seconds,
    heaviest,
    measured,
    basis:
      `${measured ? 'measured' : `measured on SQLite, not on ${dialect}`} (${costs.machine}, ${costs.measuredAt}; bench/migration-cost.mjs)` +
      (unmeasured.size > 0 ? `; ${[...unmeasured].join(', ')} operations not measured, counted as nothing` : ''),
  }
}

/** "about 42 s" / "about 3 min" / "under a second". */
export function formatDuration(seconds: number): string {
  if (seconds < 1) return 'under a second'
  if (seconds < 120) return `about ${Math.round(seconds)} s`
  return `about ${Math.round(seconds / 60)} min`
}
