/**
 * `upgrade plan`: from the live state of a deployment (served version, schema revision, the active bundle's
 * pins, table sizes) and the migration catalog, what an upgrade to a release would do, what could go wrong,
 * what blocks it, and how it would run. Pure; the fingerprint ties a saved plan to the state it was made from.
 */
import {createHash} from 'node:crypto'
import semver from 'semver'

import type {BundleInfo, ConnectManifest} from './bundle.js'
import {
  findRelease,
  rollbackKind,
  schemaStatus,
  type CatalogOverlay,
  type MigrationCatalog,
  type PendingRevision,
  type RollbackKind,
  type SchemaKind,
} from './catalog.js'
import {pythonRequiresForBundle, pythonSatisfies} from './versions.js'
import {servedAppMode} from './app-mode.js'
import {UsageError} from '../errors.js'
import {estimateMigration, formatDuration, type MigrationCosts, type MigrationEstimate} from './migration-estimate.js'

export const PLAN_FORMAT_VERSION = 1

/** What the running deployment reports: the Connect content, the active bundle's files and the ops status. */
export interface LiveState {
  server: string
  guid: string
  bundleId: string
  bundle: {info: BundleInfo; manifest: ConnectManifest}
  status: {
    mlflowVersion: string
    dbRevision: string | null
    schemaState: string
    storageMode: string
    /** The backend store URL as the extension reports it (password masked). */
    backendStore?: string
    /** The backend's dialect: sqlite, postgresql, mssql, mysql. */
    dialect: string
    pythonVersion?: string
    sqliteVersion?: string
    rowEstimates?: Record<string, number>
    tables?: string[]
  }
  /** The item's effective init_timeout (its own, else the server's default), when Connect said. */
  initTimeoutSeconds?: number
}

/** How long the pending migrations will take, against the start limit Connect gives the item. */
export interface PlanEstimate extends MigrationEstimate {
  initTimeoutSeconds?: number
  /** One sentence: the estimate against init_timeout, and what that means now that migrations run behind 503. */
  summary: string
}

export interface PlanFinding {
  code: string
  message: string
}

export type UpgradeStrategy = 'none' | 'zero-downtime' | 'maintenance'

export interface UpgradePlan {
  formatVersion: number
  createdAt: string
  server: string
  guid: string
  bundleId: string
  from: {mlflowVersion: string; revision: string | null; appMode: string; python: string}
  to: {mlflowVersion: string; head: string; appMode: string; appModeReason: string; pythonRequires: string}
  schema: {kind: SchemaKind; explanation: string; pending: PendingRevision[]; estimate?: PlanEstimate}
  pythonChange?: string
  breakingChanges: Array<{from: string; text: string}>
  hazards: PlanFinding[]
  blockers: PlanFinding[]
  strategy: UpgradeStrategy
  /** How a rollback after this upgrade would go: instant when the pending migrations only add. */
  rollback: RollbackKind
  steps: string[]
  fingerprint: string
}

/** The parts of the live state an upgrade depends on. A saved plan is stale when any of them moved. */
export function fingerprintOf(state: LiveState, targetVersion: string): string {
  // The storage counts too: a plan made against local SQLite says nothing about a PostgreSQL the env now points at.
  // Without the query string, which can name a per-process temporary file (sslrootcert in AWS mode).
  const storage = [state.status.storageMode, state.status.dialect, (state.status.backendStore ?? '').split('?')[0]]
  const basis = [
    state.server.replace(/\/+$/, ''),
    state.guid,
    state.bundleId,
    state.status.mlflowVersion,
    state.status.dbRevision ?? '',
    state.bundle.info.mlflowVersion,
    targetVersion,
    ...storage,
  ]
  return createHash('sha256').update(JSON.stringify(basis)).digest('hex').slice(0, 32)
}

const inLine = (version: string, pattern: string) => {
  const [major, minor] = pattern.split('.')
  return semver.major(version) === Number(major) && semver.minor(version) === Number(minor)
}

function hazardsFor(
  overlay: CatalogOverlay,
  state: LiveState,
  target: string,
  pendingRevisions: string[],
): {hazards: PlanFinding[]; blockers: PlanFinding[]} {
  const hazards: PlanFinding[] = []
  const blockers: PlanFinding[] = []
  for (const hazard of overlay.hazards) {
    if (hazard.dialects && !hazard.dialects.includes(state.status.dialect)) continue
    const versionHit = hazard.versions
      ? hazard.versions.some((pattern) => inLine(target, pattern))
      : hazard.from
        ? semver.gte(target, hazard.from)
        : true
    if (!versionHit) continue
    const finding = {code: `HAZARD_${hazard.id.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`, message: hazard.reason}
    if (hazard.severity === 'blocker' && (!hazard.revision || pendingRevisions.includes(hazard.revision)))
      blockers.push(finding)
    else if (hazard.severity === 'blocker-if-old-sqlite') {
      const sqlite = state.status.sqliteVersion
      if (sqlite && semver.valid(semver.coerce(sqlite)) && semver.lt(semver.coerce(sqlite)!, '3.31.0'))
        blockers.push({...finding, message: `${finding.message} (the deployment has SQLite ${sqlite}).`})
      else if (!sqlite)
        hazards.push({...finding, message: `${finding.message} (the deployment did not report its SQLite version).`})
    } else if (hazard.severity === 'blocker-if-at-revision') {
      if (hazard.revision && state.status.dbRevision === hazard.revision) blockers.push(finding)
    } else hazards.push(finding)
  }
  return {hazards, blockers}
}

/** Plans the upgrade of a live deployment to `targetVersion`. @throws UsageError VERSION_UNKNOWN */
export function planUpgrade(
  catalog: MigrationCatalog,
  overlay: CatalogOverlay,
  state: LiveState,
  targetVersion: string,
  now: Date,
  costs?: MigrationCosts,
): UpgradePlan {
  const target = findRelease(catalog, targetVersion)
  const {info, manifest} = state.bundle
  const tables = state.status.tables ?? (state.status.schemaState === 'empty' ? [] : ['experiments', 'runs'])
  const schema = schemaStatus(
    catalog,
    overlay,
    {
      tables,
      revision: state.status.dbRevision,
      hasVersionTable: state.status.dbRevision !== null || state.status.schemaState !== 'empty',
    },
    target.version,
    state.status.rowEstimates ?? {},
  )
  const blockers: PlanFinding[] = []
  const python = state.status.pythonVersion ?? manifest.python.version
  const floorTo = pythonRequiresForBundle(target.version, info.storage)
  if (!pythonSatisfies(python, floorTo))
    blockers.push({
      code: 'PYTHON_TOO_OLD',
      message: `MLflow ${target.version} needs Python ${floorTo}; the deployment runs Python ${python}. Re-render the bundle with a newer Python first.`,
    })
  const schemaBlock: Partial<Record<SchemaKind, string>> = {
    ahead: 'DB_AHEAD_OF_TARGET',
    'foreign-alembic': 'FOREIGN_ALEMBIC_REVISION',
    diverged: 'REVISION_NOT_ON_TARGET_CHAIN',
    'pre-1.0': 'DB_UNVERSIONED',
    partial: 'DB_PARTIAL',
  }
  if (schemaBlock[schema.kind]) blockers.push({code: schemaBlock[schema.kind]!, message: schema.explanation})
  if (state.status.mlflowVersion !== info.mlflowVersion)
    blockers.push({
      code: 'VERSION_DRIFT',
      message: `The deployment serves MLflow ${state.status.mlflowVersion}, but its bundle pins ${info.mlflowVersion}: redeploy the bundle first.`,
    })
  const fromVersion = state.status.mlflowVersion
  const upward = semver.valid(fromVersion) ? semver.gt(target.version, fromVersion) : true
  const breakingChanges = overlay.breaking.filter(
    (change) =>
      (!semver.valid(fromVersion) || semver.gt(change.from, fromVersion)) && semver.lte(change.from, target.version),
  )
  if (semver.valid(fromVersion) && semver.lt(target.version, fromVersion) && schema.kind !== 'current')
    blockers.push({
      code: 'DOWNGRADE',
      message: `MLflow ${target.version} is older than the deployed ${fromVersion}, and MLflow has no schema downgrades: restore a backup taken under ${target.version} instead.`,
    })
  const {hazards, blockers: hazardBlockers} = hazardsFor(
    overlay,
    state,
    target.version,
    schema.pending.map((p) => p.revision),
  )
  blockers.push(...hazardBlockers)
  const schemaChanges = schema.kind === 'behind' || schema.kind === 'empty'
  const strategy: UpgradeStrategy =
    fromVersion === target.version && schema.kind === 'current'
      ? 'none'
      : schemaChanges
        ? 'maintenance'
        : 'zero-downtime'
  const steps =
    strategy === 'none'
      ? ['Nothing to do: the deployment already serves this release.']
      : strategy === 'zero-downtime'
        ? [
            'Back up and verify the backup.',
            `Bump the active bundle to MLflow ${target.version} and deploy it as a draft.`,
            'Verify the draft at its preview URL, then activate it and verify again.',
            'On failure: keep or re-activate the previous bundle.',
          ]
        : [
            'Back up the database and artifacts, and verify the backup.',
            `Bump the active bundle to MLflow ${target.version} and deploy it to the same GUID.`,
            `The new bundle runs ${schema.pending.length} migrations once, under the extension's migration lock.`,
            'Verify /version, the REST API and the schema revision, as draft and after activation.',
            'On failure: restore the backup and re-activate the previous bundle.',
          ]
  const served = servedAppMode(manifest.metadata.appmode, target.version)
  if (served.blocker) blockers.push(served.blocker)
  return {
    formatVersion: PLAN_FORMAT_VERSION,
    createdAt: now.toISOString(),
    server: state.server,
    guid: state.guid,
    bundleId: state.bundleId,
    from: {mlflowVersion: fromVersion, revision: state.status.dbRevision, appMode: manifest.metadata.appmode, python},
    to: {
      mlflowVersion: target.version,
      head: target.trackingHead,
      appMode: served.appMode,
      appModeReason: served.reason,
      pythonRequires: floorTo,
    },
    schema: {
      kind: schema.kind,
      explanation: schema.explanation,
      pending: schema.pending,
      ...(costs && schemaChanges && schema.pending.length > 0
        ? {estimate: planEstimate(schema.pending, overlay, costs, state)}
        : {}),
    },
    ...(manifest.environment?.python?.requires !== floorTo
      ? {
          pythonChange: `Python requirement ${manifest.environment?.python?.requires ?? '?'} → ${floorTo} (the bundle runs ${python})`,
        }
      : {}),
    breakingChanges: upward ? breakingChanges : [],
    hazards,
    blockers,
    strategy,
    rollback: rollbackKind(schema.pending, fromVersion),
    steps,
    fingerprint: fingerprintOf(state, target.version),
  }
}

function planEstimate(
  pending: PendingRevision[],
  overlay: CatalogOverlay,
  costs: MigrationCosts,
  state: LiveState,
): PlanEstimate {
  const estimate = estimateMigration(
    pending.map((p) => p.revision),
    overlay.costs ?? {},
    costs,
    state.status.rowEstimates ?? {},
    state.status.dialect,
  )
  const limit = state.initTimeoutSeconds
  const against =
    limit === undefined
      ? ''
      : estimate.seconds > limit
        ? `, longer than the item's init_timeout (${limit} s). The extension answers at once and migrates behind 503 (clients retry), so Connect does not kill it; expect MLflow to be unavailable for that long`
        : `, within the item's init_timeout (${limit} s)`
  return {
    ...estimate,
    initTimeoutSeconds: limit,
    summary: `Migration time: ${formatDuration(estimate.seconds)}${against} (${estimate.basis}).`,
  }
}

/**
 * The one reader of a saved plan (`upgrade plan --plan-file`): it must be a plan this release writes.
 * @throws PLAN_INVALID (not a plan: unreadable, not JSON, no fingerprint), PLAN_FORMAT_UNSUPPORTED
 */
export function readSavedPlan(value: unknown, source: string): UpgradePlan {
  const plan = value as Partial<UpgradePlan> | undefined
  const looksLikePlan =
    typeof plan === 'object' &&
    plan !== null &&
    typeof plan.fingerprint === 'string' &&
    typeof plan.guid === 'string' &&
    typeof plan.formatVersion === 'number'
  if (!looksLikePlan)
    throw new UsageError('PLAN_INVALID', `${source} is not a plan written by mlflowctl upgrade plan --plan-file.`, {
      suggestions: ['Write one with mlflowctl upgrade plan --guid GUID --to VERSION --plan-file FILE.'],
    })
  if (plan.formatVersion !== PLAN_FORMAT_VERSION) {
    throw new UsageError(
      'PLAN_FORMAT_UNSUPPORTED',
      `${source} is a plan of format ${plan.formatVersion}; this mlflowctl reads format ${PLAN_FORMAT_VERSION}.`,
      {suggestions: ['Plan again with this mlflowctl (upgrade plan --plan-file), then apply that plan.']},
    )
  }
  return plan as UpgradePlan
}
