// `storage report` and `gc`: the rules around the extension's (or the storage tool's) report and purge. The purge
// itself runs where the data is (storage_gc.py); here are what a request may ask, the backup before it, the trend
// from the backup history and the ledger entry after it.
import {UsageError} from '../errors.js'
import type {GcEvent, GcResultEvent, StorageReport} from './extension-contract.js'
import {filterHistory, type HistoryEvent} from './history.js'

/** Which store: a deployment on Connect, a dev instance, or a self-hosted database and its artifact store. */
export type StorageTarget =
  {kind: 'connect'; guid: string} | {kind: 'dev'; dir: string} | {kind: 'database'; url: string; artifacts: string}

/** From --guid, --dev or --db with --artifacts-source (oclif has checked that exactly one of the three is given). */
export function storageTargetOf(flags: {
  guid?: string
  dev?: string
  db?: string
  'artifacts-source'?: string
}): StorageTarget {
  if (flags.guid) return {kind: 'connect', guid: flags.guid}
  if (flags.dev) return {kind: 'dev', dir: flags.dev}
  if (!flags['artifacts-source'])
    throw new UsageError(
      'ARTIFACTS_SOURCE_REQUIRED',
      '--db needs --artifacts-source: where that server stores artifacts.',
      {
        suggestions: [
          'Pass the directory or s3://, wasbs://, gs:// URL the server was given as --artifacts-destination.',
        ],
      },
    )
  return {kind: 'database', url: flags.db!, artifacts: flags['artifacts-source']}
}

/** What storage_gc.py's GcOptions.from_json reads. */
export interface GcRequest {
  olderThanMs: number
  experimentIds?: string[]
  tracesOlderThanMs?: number
  orphans: boolean
  graceSeconds: number
  yes: boolean
}

/** Where a store's report and gc run: a deployment's ops endpoint, a dev instance's, or the local storage tool. */
export interface StorageSite {
  /** How messages and the history name it: connect:GUID, the dev instance, or the redacted database URL. */
  location: string
  /** The deployment's GUID, for the history ledger (`history --guid`). */
  guid?: string
  report(): Promise<StorageReport>
  /** Runs a gc there, handing each event on as it arrives. @throws GC_RUNNING when another gc holds the lock. */
  gc(request: GcRequest, onEvent: (event: GcEvent) => void): Promise<GcResultEvent>
}

export interface GcDeps {
  site: StorageSite
  /** Takes the backup before a purge; its ID. Undefined with --no-backup. */
  backup?: () => Promise<string>
  history: {append(event: HistoryEvent): Promise<void>}
  clock: {now(): Date}
  onEvent(event: GcEvent): void
}

export interface GcOutcome {
  location: string
  dryRun: boolean
  backupId: string | null
  result: GcResultEvent
}

/**
 * The backup rule: a dry run needs nothing; a purge (`--yes`) backs up first into the configured repository, or
 * into --repo, and only --no-backup skips it.
 * @throws UsageError GC_NEEDS_BACKUP when --yes has neither a repository nor --no-backup
 */
export function gcBackupPlan(options: {yes: boolean; noBackup: boolean; repo?: string}): 'none' | 'repo' {
  if (!options.yes || options.noBackup) return 'none'
  if (options.repo) return 'repo'
  throw new UsageError('GC_NEEDS_BACKUP', 'gc --yes deletes permanently, and no backup repository is set.', {
    suggestions: [
      'Pass --repo DIR|s3://… (or set MLFLOWCTL_REPO) to back up first.',
      'Or pass --no-backup if a backup was taken another way.',
    ],
  })
}

/** A dry run by default; with `yes`, a backup first (when `deps.backup` is given), then the purge and a ledger entry. */
export async function runGc(deps: GcDeps, request: GcRequest): Promise<GcOutcome> {
  const backupId = request.yes && deps.backup ? await deps.backup() : null
  try {
    const result = await deps.site.gc(request, deps.onEvent)
    if (request.yes)
      await deps.history.append({
        v: 1,
        time: deps.clock.now().toISOString(),
        action: 'gc',
        result: 'ok',
        server: deps.site.location,
        guid: deps.site.guid,
        message: `freed ${result.bytesFreed} bytes: ${describeDeleted(result)}${backupId ? `; backup ${backupId} first` : ''}`,
      })
    return {location: deps.site.location, dryRun: !request.yes, backupId, result}
  } catch (error) {
    if (request.yes)
      await deps.history
        .append({
          v: 1,
          time: deps.clock.now().toISOString(),
          action: 'gc',
          result: 'failed',
          server: deps.site.location,
          guid: deps.site.guid,
          message: (error as Error).message,
        })
        .catch(() => undefined)
    throw error
  }
}

export function describeDeleted(result: GcResultEvent): string {
  const parts = Object.entries(result.deleted)
    .filter(([, done]) => done.count > 0 || done.files > 0)
    .map(([kind, done]) => `${kind} ${done.count} (${done.files} files)`)
  return parts.length > 0 ? parts.join(', ') : 'nothing'
}

export interface TrendPoint {
  time: string
  bytes: number
}

/** The sizes of the successful backups of this location, oldest first, from the history ledger. Pure. */
export function storageTrend(events: HistoryEvent[], location: string): TrendPoint[] {
  return filterHistory(events)
    .filter((event) => event.action === 'backup' && event.result === 'ok' && event.server === location)
    .flatMap((event) => {
      const bytes = /\((\d+) bytes\)/.exec(event.message ?? '')
      return bytes ? [{time: event.time, bytes: Number(bytes[1])}] : []
    })
}

const RETENTION_KEYS = ['deleted', 'traces', 'orphans', 'every'] as const
/** As the extension's settings.parse_duration reads it: a number and s, m, h or d (none: seconds). */
const EXTENSION_DURATION = /^\s*\d+(?:\.\d+)?\s*[smhd]?\s*$/

/**
 * MLFLOWCTL_RETENTION checked before it is deployed, by the rules the extension applies (settings.py
 * `load_retention_settings`): comma-separated KEY=DURATION with keys deleted, traces, orphans and every, and at least
 * one of the first three. Pure.
 * @throws UsageError INVALID_RETENTION
 */
export function checkRetentionPolicy(text: string): string {
  const refuse = (why: string) =>
    new UsageError('INVALID_RETENTION', `--retention "${text}": ${why}.`, {
      suggestions: ['For example deleted=30d,traces=90d (keys: deleted, traces, orphans=GRACE, every).'],
    })
  const keys = new Set<string>()
  for (const part of text.split(',')) {
    const [key, value, ...rest] = part.trim().split('=')
    if (value === undefined || rest.length > 0 || !(RETENTION_KEYS as readonly string[]).includes(key))
      throw refuse(`"${part.trim()}" is not one of ${RETENTION_KEYS.map((k) => `${k}=DURATION`).join(', ')}`)
    if (!EXTENSION_DURATION.test(value)) throw refuse(`${value} is not a duration (7d, 12h, 30m or 45s)`)
    keys.add(key)
  }
  if (!['deleted', 'traces', 'orphans'].some((key) => keys.has(key)))
    throw refuse('name at least one of deleted=, traces= or orphans=')
  return text.trim()
}
