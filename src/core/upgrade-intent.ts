/**
 * The intent record of `upgrade apply`: what the upgrade set out to do and the last step it finished, written
 * durably before the next step starts. A run that dies (a closed lid, a cancelled pipeline, kill -9) leaves it
 * behind, and `upgrade status`, `upgrade resume`, `upgrade abort`, the next `upgrade apply` and `doctor` read it
 * with what the deployment serves now to say where the upgrade stopped and how to finish or undo it. Pure.
 */
import {ConfigError} from '../errors.js'
import type {LiveState} from './upgrade-plan.js'

export const INTENT_FORMAT_VERSION = 1

/**
 * The steps an upgrade records, in order. Forward: the backup, then the new bundle's upload, draft, draft
 * verification, activation and verification. A failure (or `upgrade abort`) turns it back: the restore, then the
 * previous bundle active again.
 */
export const FORWARD_STEPS = [
  'started',
  'backup-taken',
  'bundle-uploaded',
  'draft-deployed',
  'draft-verified',
  'activated',
  'verified',
] as const
export const ROLLBACK_STEPS = [
  'rollback-started',
  'restore-started',
  'restore-finished',
  'previous-reactivated',
] as const
export type UpgradeStep = (typeof FORWARD_STEPS)[number] | (typeof ROLLBACK_STEPS)[number]

/** The steps a test can stop the process at (MLFLOWCTL_FAULT_AT=upgrade:STEP). */
export const FAULT_STEPS: readonly UpgradeStep[] = [...FORWARD_STEPS.slice(1), ...ROLLBACK_STEPS.slice(1)]

export interface UpgradeIntent {
  v: number
  server: string
  guid: string
  startedAt: string
  updatedAt: string
  step: UpgradeStep
  /** The deployment as the upgrade found it: what a rollback returns to. */
  from: {bundleId: string; mlflowVersion: string; revision: string | null}
  to: {mlflowVersion: string; head: string}
  /** The live state the upgrade planned from (the previous bundle's files are not kept). */
  state: LiveState
  /** The backup's repository as it was given (a path or URL), so that resume and abort use the same one. */
  repo?: string
  backup?: {id: string; path: string; revision: string | null}
  /** The new bundle, once uploaded. */
  newBundleId?: string
  /** Why a rollback began (the first line of the failure), once one has. */
  cause?: string
}

const isRollbackStep = (step: UpgradeStep) => (ROLLBACK_STEPS as readonly string[]).includes(step)

/** The record after a step, with its time. */
export const advance = (intent: UpgradeIntent, step: UpgradeStep, at: Date, extra: Partial<UpgradeIntent> = {}) => ({
  ...intent,
  ...extra,
  step,
  updatedAt: at.toISOString(),
})

/** What the deployment serves now, as far as an interrupted upgrade is concerned. */
export interface ServedNow {
  activeBundleId: string | null
  /** The schema revision the active bundle reports; undefined when it does not answer (refused, starting, down). */
  revision?: string
}

export type InterruptedState =
  /** The previous bundle serves the data at its own revision: nothing to undo (a restore may have put it back). */
  | 'previous-serving'
  /** The previous bundle is active but the schema moved (the draft migrated it), or it does not answer. */
  | 'previous-on-migrated-schema'
  /** The new bundle is active. */
  | 'new-bundle-active'
  /** Another bundle is active: someone deployed meanwhile. */
  | 'other-bundle-active'

export interface InterruptedUpgrade {
  guid: string
  step: UpgradeStep
  direction: 'forward' | 'rollback'
  state: InterruptedState
  from: UpgradeIntent['from']
  to: UpgradeIntent['to']
  backupId?: string
  newBundleId?: string
  activeBundleId: string | null
  revision?: string
  /** One paragraph: where the upgrade stopped and what the deployment serves. */
  summary: string
  /** Whether `upgrade resume` can finish it (a rollback that began can only be finished by `upgrade abort`). */
  resumable: boolean
  /** The commands that finish or undo it, the recommended one first. */
  next: string[]
}

function classifyServed(intent: UpgradeIntent, now: ServedNow): InterruptedState {
  if (now.activeBundleId === intent.from.bundleId)
    return now.revision !== undefined && now.revision === intent.from.revision
      ? 'previous-serving'
      : 'previous-on-migrated-schema'
  if (intent.newBundleId && now.activeBundleId === intent.newBundleId) return 'new-bundle-active'
  return 'other-bundle-active'
}

const STEP_TEXT: Record<UpgradeStep, string> = {
  started: 'it had started; no backup was finished',
  'backup-taken': 'the backup was taken and verified; nothing was deployed',
  'bundle-uploaded': 'the new bundle was uploaded; it was not deployed',
  'draft-deployed': 'the new bundle ran as a draft, which runs the migrations',
  'draft-verified': 'the draft passed verification; it was not activated',
  activated: 'the new bundle was activated; it was not verified',
  verified: 'the new bundle was verified after activation; the upgrade was not recorded as done',
  'rollback-started': 'the upgrade failed and a rollback began',
  'restore-started': 'the rollback was restoring the backup',
  'restore-finished': 'the rollback restored the backup; the previous bundle was not yet active',
  'previous-reactivated': 'the rollback made the previous bundle active; it was not verified',
}

const STATE_TEXT: Record<InterruptedState, (intent: UpgradeIntent, now: ServedNow) => string> = {
  'previous-serving': (intent) =>
    `The previous bundle ${intent.from.bundleId} (MLflow ${intent.from.mlflowVersion}) serves the data at its own schema revision ${intent.from.revision ?? 'none'}.`,
  'previous-on-migrated-schema': (intent, now) =>
    now.revision === undefined
      ? `The previous bundle ${intent.from.bundleId} (MLflow ${intent.from.mlflowVersion}) is active but does not report its schema: it may refuse a database that was migrated past it.`
      : `The previous bundle ${intent.from.bundleId} (MLflow ${intent.from.mlflowVersion}) is active on a schema migrated to ${now.revision}, which it does not expect.`,
  'new-bundle-active': (intent, now) =>
    `The new bundle ${intent.newBundleId} (MLflow ${intent.to.mlflowVersion}) is active${now.revision ? ` at schema revision ${now.revision}` : ' and does not report its schema'}.`,
  'other-bundle-active': (_intent, now) =>
    `Bundle ${now.activeBundleId ?? 'none'} is active, which this upgrade neither started from nor deployed: someone deployed meanwhile.`,
}

/** Where the upgrade stopped, what is served, and the commands that finish or undo it. */
export function describeInterrupted(intent: UpgradeIntent, now: ServedNow): InterruptedUpgrade {
  const state = classifyServed(intent, now)
  const direction = isRollbackStep(intent.step) ? 'rollback' : 'forward'
  const resumable = direction === 'forward' && state !== 'other-bundle-active'
  const resume = `mlflowctl upgrade resume --guid ${intent.guid}`
  const abort = `mlflowctl upgrade abort --guid ${intent.guid}`
  const forgetting = `mlflowctl upgrade abort --guid ${intent.guid} --forget (keeps what is deployed; only the record goes)`
  const next = state === 'other-bundle-active' ? [abort, forgetting] : resumable ? [resume, abort] : [abort]
  const summary = [
    `The upgrade of ${intent.guid} from MLflow ${intent.from.mlflowVersion} to ${intent.to.mlflowVersion} (started ${intent.startedAt}) stopped after its step "${intent.step}": ${STEP_TEXT[intent.step]}.`,
    STATE_TEXT[state](intent, now),
    direction === 'rollback'
      ? `It was rolling back${intent.cause ? ` (${intent.cause})` : ''}: finish the rollback with upgrade abort.`
      : 'Finish it with upgrade resume, or undo it with upgrade abort.',
  ].join(' ')
  return {
    guid: intent.guid,
    step: intent.step,
    direction,
    state,
    from: intent.from,
    to: intent.to,
    backupId: intent.backup?.id,
    newBundleId: intent.newBundleId,
    activeBundleId: now.activeBundleId,
    revision: now.revision,
    summary,
    resumable,
    next,
  }
}

/** Reads a record written by upgradeIntentFiles. @throws ConfigError UPGRADE_RECORD_INVALID */
export function parseIntent(text: string, where: string): UpgradeIntent {
  let intent: Partial<UpgradeIntent>
  try {
    intent = JSON.parse(text) as Partial<UpgradeIntent>
  } catch (error) {
    throw invalidRecord(where, (error as Error).message)
  }
  const steps: readonly string[] = [...FORWARD_STEPS, ...ROLLBACK_STEPS]
  if (intent.v !== INTENT_FORMAT_VERSION)
    throw invalidRecord(where, `format ${String(intent.v)} is not ${INTENT_FORMAT_VERSION}`)
  if (!intent.guid || !intent.server || !intent.from?.bundleId || !intent.to?.mlflowVersion || !intent.state)
    throw invalidRecord(where, 'a field is missing')
  if (!intent.step || !steps.includes(intent.step)) throw invalidRecord(where, `unknown step ${String(intent.step)}`)
  return intent as UpgradeIntent
}

const invalidRecord = (where: string, why: string) =>
  new ConfigError('UPGRADE_RECORD_INVALID', `The upgrade record ${where} cannot be read (${why}).`, {
    suggestions: [
      'It was written by an upgrade that did not finish: check the deployment with mlflowctl doctor, then remove the file.',
    ],
  })
