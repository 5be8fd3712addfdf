import type {HistoryEvent} from '../../core/history.js'
import {table} from '../table.js'

/** The history ledger as a table, oldest first. */
export function showHistory(events: HistoryEvent[]): string {
  return table(
    ['TIME', 'ACTION', 'RESULT', 'USER', 'GUID', 'BUNDLE', 'MLFLOW', 'REVISION'],
    events.map((e) => [
      e.time,
      e.action,
      e.result,
      e.user ?? '-',
      e.guid ?? '-',
      e.bundleId ?? '-',
      e.mlflowVersion ?? '-',
      e.revision ?? '-',
    ]),
  )
}
