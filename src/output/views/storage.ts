// What `storage report` and `gc` print for humans (--json prints the result itself).
import type {GcOutcome, TrendPoint} from '../../core/storage.js'
import type {GcStatus, StorageReport} from '../../core/extension-contract.js'
import {formatBytes} from '../../core/units.js'
import {table} from '../table.js'

const when = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().slice(0, 16).replace('T', ' ') : '-')
const size = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? '-' : formatBytes(bytes))

export interface StorageReportView {
  location: string
  report: StorageReport
  trend: TrendPoint[]
}

export function showStorageReport({location, report, trend}: StorageReportView): string {
  const estimated = new Set(report.estimated)
  const approx = (key: string, value: number | null) =>
    value === null ? '-' : `${estimated.has(key) ? '~' : ''}${value.toLocaleString('en-US')}`
  const {database, artifacts, traces, deleted, orphans} = report
  const sections = [
    `Storage of ${location} (${report.generatedAt})`,
    '',
    `Database (${database.dialect}): ${size(database.bytes)}`,
    table(
      ['Table', 'Rows', 'Bytes'],
      database.largestTables.map((t) => [t.name, approx('database.tables.rows', t.rows), size(t.bytes)]),
    ),
    '',
    `Artifacts in ${artifacts.destination}: ${size(artifacts.bytes)} in ${artifacts.files} files`,
    table(
      ['Experiment', 'Name', 'Stage', 'Bytes', 'Files'],
      artifacts.byExperiment
        .slice(0, 20)
        .map((e) => [e.experimentId, e.name ?? '-', e.lifecycleStage ?? '-', size(e.bytes), String(e.files)]),
    ),
    '',
    `Traces: ${approx('traces.count', traces.count)}, ${size(traces.bytes)} of artifacts, oldest ${when(traces.oldestMs)}`,
    '',
    'Deleted, not purged yet (mlflowctl gc takes them):',
    table(
      ['Kind', 'Count', 'Bytes'],
      (['experiments', 'runs', 'loggedModels', 'modelVersions'] as const).map((kind) => [
        kind,
        String(deleted[kind].count),
        size(deleted[kind].bytes),
      ]),
    ),
    `Oldest deleted run: ${when(deleted.oldestDeletedRunMs)}`,
    '',
    `Orphaned artifacts (no row refers to them): ${orphans.count} (${size(orphans.bytes)}), ${orphans.pastGrace} unchanged for ${orphans.graceSeconds / 3600} h (gc --orphans takes those)`,
    ...orphans.listed.slice(0, 10).map((o) => `  ${o.path}  ${size(o.bytes)}  ${o.files} files  ${when(o.modifiedMs)}`),
    ...(orphans.unrecognised.count > 0
      ? [
          `Not MLflow's layout, never deleted: ${orphans.unrecognised.count} (${size(orphans.unrecognised.bytes)})`,
          ...orphans.unrecognised.listed.slice(0, 10).map((o) => `  ${o.path}  ${size(o.bytes)}  ${o.files} files`),
        ]
      : []),
  ]
  if (trend.length > 0)
    sections.push(
      '',
      'Backup sizes over time (from the history ledger):',
      ...trend.slice(-10).map((point) => `  ${point.time.slice(0, 16).replace('T', ' ')}  ${size(point.bytes)}`),
    )
  if (report.gc) sections.push('', showGcStatus(report.gc))
  if (estimated.size > 0) sections.push('', '~ marks estimates (from the database statistics, never a full count).')
  return sections.join('\n')
}

export function showGcStatus(status: GcStatus): string {
  const policy = status.retention
    ? status.retention.invalid
      ? `refused (${status.retention.invalid})`
      : status.retention.policy
    : 'off (MLFLOWCTL_RETENTION is not set)'
  const last = status.last
    ? `${status.last.trigger} ${status.last.ok ? 'ok' : `failed (${status.last.error})`} at ${status.last.finishedAt}, freed ${size(status.last.bytesFreed)}`
    : 'none yet'
  const pending = status.pending ? `${status.pending.runs} runs, ${status.pending.experiments} experiments` : '-'
  return `Retention: ${policy}\nLast gc: ${last}\nDeleted, waiting for gc: ${pending}`
}

export function showGc(outcome: GcOutcome): string {
  const {result} = outcome
  const rows = Object.entries(result.kinds).map(([kind, planned]) => [
    kind,
    String(planned.count),
    String(planned.files),
    size(planned.bytes),
    outcome.dryRun ? '-' : `${result.deleted[kind as keyof typeof result.deleted].count}`,
  ])
  const head = outcome.dryRun
    ? `Dry run on ${outcome.location}: nothing was deleted. Pass --yes to delete what is listed.`
    : `gc of ${outcome.location}: freed ${size(result.bytesFreed)} in ${result.seconds} s (longest transaction ${result.longestTransactionSeconds} s)${outcome.backupId ? `, backup ${outcome.backupId} first` : ''}.`
  const kept = result.kept
    ? `\nKept ${result.kept} director${result.kept === 1 ? 'y' : 'ies'} of purged rows that remaining rows still use (a registered model version's source).`
    : ''
  return `${head}\n${table(['Kind', 'Count', 'Files', 'Bytes', 'Deleted'], rows)}${kept}`
}
