import type {FleetRow, FleetSummary} from '../../core/fleet.js'
import {table} from '../table.js'

const age = (iso: string | undefined, now: number) => {
  if (!iso) return 'never'
  const hours = (now - Date.parse(iso)) / 3_600_000
  return hours < 48 ? `${hours.toFixed(1)}h ago` : `${(hours / 24).toFixed(1)}d ago`
}

const doctorLabel = (row: FleetRow) =>
  !row.doctor
    ? row.access === 'view'
      ? 'not run (view only)'
      : 'not run'
    : row.doctor.exitCode === 0
      ? 'ok'
      : `fail (exit ${row.doctor.exitCode}${row.doctor.failed.length ? `: ${row.doctor.failed.join(', ')}` : ''})`

/** A reason cut to fit a table cell; --json keeps it whole. */
const short = (text: string) => {
  const plain = text.replace(/^Status of [\w-]+: /, '')
  return plain.length > 60 ? `${plain.slice(0, 57)}...` : plain
}

export function showFleetList(rows: FleetRow[], now: number): string {
  if (rows.length === 0) return 'No mlflowctl deployment is visible to this API key.'
  const body = table(
    ['GUID', 'NAME', 'OWNER', 'ACCESS', 'MLFLOW', 'STORAGE', 'SCHEMA', 'LAST BACKUP', 'REPLICA LAG', 'DOCTOR'],
    rows.map((row) => [
      row.guid,
      row.name,
      row.owner ?? '?',
      row.access,
      row.mlflowVersion ?? '?',
      row.storage ?? '?',
      row.schema === 'unknown' && row.statusError ? `unknown (${short(row.statusError)})` : row.schema,
      age(row.lastBackup, now),
      row.replicaLagSeconds === undefined ? '-' : `${row.replicaLagSeconds.toFixed(1)}s`,
      doctorLabel(row),
    ]),
  )
  return body
}

export function showFleetSummary(summary: FleetSummary): string {
  if (summary.outcomes.length === 0) return 'No mlflowctl deployment is visible to this API key.'
  const lines = [
    table(
      ['GUID', 'NAME', 'EXIT', 'SECONDS', 'RESULT'],
      summary.outcomes.map((outcome) => [
        outcome.guid,
        outcome.name,
        String(outcome.exitCode),
        outcome.seconds.toFixed(1),
        outcome.skipped
          ? `skipped: ${outcome.skipped}`
          : outcome.error
            ? `${outcome.error.code}: ${outcome.error.message}`
            : 'ok',
      ]),
    ),
    '',
    `${summary.outcomes.length - summary.failed.length - summary.skipped.length} ok, ${summary.failed.length} failed, ${summary.skipped.length} skipped; exit ${summary.exitCode} (the worst).`,
  ]
  const fixes = summary.outcomes.flatMap((outcome) =>
    (outcome.error?.suggestions ?? []).slice(0, 3).map((fix) => `  ${outcome.name}: ${fix}`),
  )
  if (fixes.length > 0) lines.push('', 'To fix:', ...fixes)
  return lines.join('\n')
}
