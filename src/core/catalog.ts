/**
 * The migration catalog (catalog/mlflow-migrations.json, generated from the released MLflow wheels by
 * scripts/generate-migration-catalog.py) and its hand-curated overlay (catalog/overlay.json): which schema
 * revision each release ends at, the chain of revisions, and what is heavy or hazardous. Pure.
 */
import semver from 'semver'

import {UsageError} from '../errors.js'
import {NEWEST_KNOWN_MLFLOW} from './versions.js'
import type {RevisionCosts} from './migration-estimate.js'

export interface CatalogRevision {
  down: string | string[] | null
  message: string
  firstRelease: string
  dialects?: string[]
  heavy?: string[]
  absentIn?: string[]
  /** Tables the revision creates (op.create_table), read from the wheel; a backup must know every one. */
  creates?: string[]
  /**
   * Whether its upgrade only adds (tables, nullable or server-defaulted columns, non-unique indexes, constraints on
   * its own new tables), so that an older MLflow runs on the result unharmed; read from the operations in the wheel.
   */
  additive?: boolean
  /** The operations that make it not additive (drop_constraint, alter_column, execute (data), …). */
  notAdditive?: string[]
}

export interface CatalogRelease {
  version: string
  requiresPython: string
  trackingHead: string
  authHead: string | null
  trackingRevisions: number
}

export interface MigrationCatalog {
  releases: CatalogRelease[]
  tracking: Record<string, CatalogRevision>
  auth: Record<string, CatalogRevision>
}

export interface CatalogOverlay {
  heavy: Record<string, string>
  /** What each heavy revision does to which table, for the time estimate (core/migration-estimate.ts). */
  costs?: RevisionCosts
  hazards: Array<{
    id: string
    dialects?: string[]
    versions?: string[]
    from?: string
    revision?: string
    severity: string
    reason: string
  }>
  breaking: Array<{from: string; text: string}>
  /**
   * Triggers MLflow's migrations create on SQLite (the wheels' op.execute SQL, which the catalog does not read), from
   * the revision `since` on, with their SQL as SQLite keeps it: a restore accepts no other trigger.
   */
  sqliteTriggers?: Record<string, {table: string; since: string; sql: string}>
}

export const newestRelease = (catalog: MigrationCatalog): CatalogRelease =>
  catalog.releases.reduce((a, b) => (semver.gt(b.version, a.version) ? b : a))

/**
 * The default target everywhere (init, version bump, db status, db migrate, upgrade): the newest release this
 * mlflowctl is tested with (NEWEST_KNOWN_MLFLOW), or the catalog's newest when the catalog stops before it.
 */
export const newestSupportedRelease = (catalog: MigrationCatalog): CatalogRelease =>
  catalog.releases.find((r) => r.version === NEWEST_KNOWN_MLFLOW) ?? newestRelease(catalog)

/** Releases the catalog knows that are newer than the newest tested one: reachable with --to, untested. */
export const newerUntestedReleases = (catalog: MigrationCatalog): string[] =>
  catalog.releases
    .filter((r) => semver.gt(r.version, newestSupportedRelease(catalog).version))
    .map((r) => r.version)
    .sort(semver.compare)

/** @throws UsageError VERSION_UNKNOWN when the catalog has no such final release */
export function findRelease(catalog: MigrationCatalog, version: string): CatalogRelease {
  const release = catalog.releases.find((r) => r.version === version)
  if (!release) {
    throw new UsageError(
      'VERSION_UNKNOWN',
      `MLflow ${version} is not in the migration catalog (final releases ${catalog.releases[0].version} to ${newestRelease(catalog).version}).`,
      {
        suggestions: [
          'Use a final release (no rc/dev), or regenerate the catalog: python3 scripts/generate-migration-catalog.py.',
        ],
      },
    )
  }
  return release
}

/** The revisions from the root up to `head`, in the order they run. */
export function chainTo(revisions: Record<string, CatalogRevision>, head: string): string[] {
  const chain: string[] = []
  const seen = new Set<string>()
  for (let current: string | null = head; current && !seen.has(current);) {
    seen.add(current)
    chain.push(current)
    const down: string | string[] | null = revisions[current]?.down ?? null
    current = Array.isArray(down) ? down[0] : down
  }
  return chain.reverse()
}

export type SchemaKind =
  'empty' | 'pre-1.0' | 'partial' | 'foreign-alembic' | 'ahead' | 'diverged' | 'current' | 'behind'

export interface PendingRevision {
  revision: string
  message: string
  firstRelease: string
  dialects: string[]
  /** Why it is slow on big tables (overlay), or the generator's hint. */
  heavy?: string
  /** Tables the heavy step works over, with their estimated rows when known. */
  tables?: Array<{table: string; rows?: number}>
  /** Whether it only adds to the schema (see CatalogRevision.additive). */
  additive: boolean
  notAdditive?: string[]
}

export interface SchemaStatus {
  kind: SchemaKind
  revision: string | null
  known: boolean
  /** Releases whose head is exactly this revision. */
  matchingReleases: string[]
  target: {version: string; head: string}
  pending: PendingRevision[]
  explanation: string
}

/** Tables named by the generator's hints ("batch_alter_table:metrics", "create_index:params"). */
const hintTables = (hints: string[] = []) => [...new Set(hints.map((hint) => hint.split(':')[1]).filter(Boolean))]

export function pendingRevisions(
  catalog: MigrationCatalog,
  overlay: CatalogOverlay,
  revisions: string[],
  rowEstimates: Record<string, number> = {},
): PendingRevision[] {
  return revisions.map((revision) => {
    const entry = catalog.tracking[revision]
    const heavy = overlay.heavy[revision] ?? (entry.heavy?.length ? `hint: ${entry.heavy.join(', ')}` : undefined)
    const tables = heavy ? hintTables(entry.heavy).map((table) => ({table, rows: rowEstimates[table]})) : undefined
    return {
      revision,
      message: entry.message,
      firstRelease: entry.firstRelease,
      dialects: entry.dialects ?? [],
      ...(heavy ? {heavy, tables} : {}),
      additive: entry.additive === true,
      ...(entry.notAdditive?.length ? {notAdditive: entry.notAdditive} : {}),
    }
  })
}

/**
 * Where a database stands against a target release. `tables` are the database's table names; `revision`
 * is alembic_version's row (null when the table is missing or empty).
 */
export function schemaStatus(
  catalog: MigrationCatalog,
  overlay: CatalogOverlay,
  database: {tables: string[]; revision: string | null; hasVersionTable: boolean},
  targetVersion?: string,
  rowEstimates: Record<string, number> = {},
): SchemaStatus {
  const target = targetVersion ? findRelease(catalog, targetVersion) : newestSupportedRelease(catalog)
  const targetChain = chainTo(catalog.tracking, target.trackingHead)
  const {revision} = database
  const base = {
    revision,
    known: Boolean(revision && catalog.tracking[revision]),
    matchingReleases: revision ? catalog.releases.filter((r) => r.trackingHead === revision).map((r) => r.version) : [],
    target: {version: target.version, head: target.trackingHead},
    pending: [] as PendingRevision[],
  }
  const hasMlflowTables = ['experiments', 'runs'].some((table) => database.tables.includes(table))
  if (!database.hasVersionTable && !hasMlflowTables)
    return {
      ...base,
      kind: 'empty',
      pending: pendingRevisions(catalog, overlay, targetChain, rowEstimates),
      explanation: `No MLflow tables: MLflow ${target.version} creates its schema on first start.`,
    }
  if (!database.hasVersionTable)
    return {
      ...base,
      kind: 'pre-1.0',
      explanation:
        'MLflow tables without alembic_version: a database from before MLflow 1.0 (or made by hand). Upgrade it with MLflow 1.x first.',
    }
  if (!revision)
    return {
      ...base,
      kind: 'partial',
      explanation:
        'alembic_version is empty: an initialisation that did not finish. Restore a backup, or start from an empty database.',
    }
  if (!hasMlflowTables)
    return {...base, kind: 'partial', explanation: `alembic_version says ${revision}, but MLflow's tables are missing.`}
  if (!base.known) {
    const auth = catalog.auth[revision]
      ? ` It is a revision of MLflow's auth app ("${catalog.auth[revision].message}"): the auth database and the tracking database are the same one.`
      : ''
    return {
      ...base,
      kind: 'foreign-alembic',
      explanation: `Revision ${revision} is not one of MLflow's: another alembic-managed application shares alembic_version.${auth}`,
    }
  }
  const position = targetChain.indexOf(revision)
  if (position === targetChain.length - 1)
    return {...base, kind: 'current', explanation: `The schema is at MLflow ${target.version}'s head.`}
  if (position >= 0) {
    const pending = pendingRevisions(catalog, overlay, targetChain.slice(position + 1), rowEstimates)
    return {
      ...base,
      kind: 'behind',
      pending,
      explanation: `${pending.length} migrations to MLflow ${target.version}'s head${pending.some((p) => p.heavy) ? `, ${pending.filter((p) => p.heavy).length} heavy` : ''}.`,
    }
  }
  const revisionChain = chainTo(catalog.tracking, revision)
  if (revisionChain.includes(target.trackingHead)) {
    return {
      ...base,
      kind: 'ahead',
      explanation: `The database is ahead of MLflow ${target.version} (its revision first shipped in ${catalog.tracking[revision].firstRelease}): that version cannot serve it, and MLflow has no downgrades.`,
    }
  }
  return {
    ...base,
    kind: 'diverged',
    explanation: `Revision ${revision} is not on MLflow ${target.version}'s chain (version order is not schema order): pick a release whose chain contains it, such as ${releasesContaining(catalog, revision).slice(0, 3).join(', ')}.`,
  }
}

/** Final releases whose chain includes the revision, oldest first. */
export function releasesContaining(catalog: MigrationCatalog, revision: string): string[] {
  return catalog.releases
    .filter((release) => chainTo(catalog.tracking, release.trackingHead).includes(revision))
    .map((r) => r.version)
    .sort(semver.compare)
}

/** How a rollback from `to` back to the release at `from` goes: instantly when every migration between only adds. */
export interface RollbackKind {
  kind: 'instant' | 'restore'
  /** The revisions that are not additive, with what makes each so. */
  notAdditive: Array<{revision: string; message: string; operations: string[]}>
  explanation: string
}

export function rollbackKind(pending: PendingRevision[], fromVersion: string): RollbackKind {
  const blocking = pending
    .filter((revision) => !revision.additive)
    .map((revision) => ({
      revision: revision.revision,
      message: revision.message,
      operations: revision.notAdditive ?? ['unknown'],
    }))
  if (blocking.length === 0)
    return {
      kind: 'instant',
      notAdditive: [],
      explanation:
        pending.length === 0
          ? `No schema change: \`mlflowctl rollback\` re-activates MLflow ${fromVersion} as it is.`
          : `All ${pending.length} pending migrations only add (tables, nullable or defaulted columns, indexes): \`mlflowctl rollback\` re-activates MLflow ${fromVersion} on the newer schema without a restore, and data logged after the upgrade stays.`,
    }
  return {
    kind: 'restore',
    notAdditive: blocking,
    explanation: `${blocking.length} of ${pending.length} pending migrations change what MLflow ${fromVersion} reads or writes (${blocking
      .slice(0, 3)
      .map((b) => `${b.revision}: ${b.operations.join(', ')}`)
      .join(
        '; ',
      )}${blocking.length > 3 ? '; …' : ''}): a rollback restores the pre-upgrade backup, and data logged after the upgrade is kept only in the restore's safety backup.`,
  }
}

/**
 * Whether a database at `ahead` is one an MLflow whose head is `head` runs on unharmed: `ahead` descends from `head`
 * through migrations that only add. Returns the revisions between, or why not.
 */
export function additiveAhead(
  catalog: MigrationCatalog,
  head: string,
  ahead: string,
): {ok: true; revisions: string[]} | {ok: false; reason: string} {
  if (!catalog.tracking[ahead]) return {ok: false, reason: `revision ${ahead} is not one MLflow released`}
  const chain = chainTo(catalog.tracking, ahead)
  const from = chain.indexOf(head)
  if (from < 0) return {ok: false, reason: `revision ${ahead} does not descend from ${head}`}
  const revisions = chain.slice(from + 1)
  const blocking = revisions.filter((revision) => catalog.tracking[revision].additive !== true)
  if (blocking.length > 0)
    return {
      ok: false,
      reason: `${blocking.length} of the ${revisions.length} migrations from ${head} to ${ahead} do not only add (${blocking
        .slice(0, 3)
        .map((revision) => `${revision}: ${(catalog.tracking[revision].notAdditive ?? ['unknown']).join(', ')}`)
        .join('; ')}${blocking.length > 3 ? '; …' : ''})`,
    }
  return {ok: true, revisions}
}
