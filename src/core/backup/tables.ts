/** Table order for a backup and a restore: parents before children (foreign-key levels). Pure. */

/**
 * Orders tables so that every table comes after the tables it references; ties keep name order so that
 * archives are reproducible. Self-references are ignored; a cycle (none in MLflow's schema) keeps the
 * remaining tables in name order at the end.
 */
export function foreignKeyOrder(tables: string[], references: Record<string, string[]>): string[] {
  const remaining = new Set([...tables].sort())
  const ordered: string[] = []
  while (remaining.size > 0) {
    const ready = [...remaining].filter((table) => (references[table] ?? []).every((parent) => parent === table || !remaining.has(parent)))
    const batch = ready.length > 0 ? ready : [...remaining]
    for (const table of batch) {
      ordered.push(table)
      remaining.delete(table)
    }
  }
  return ordered
}
