/** The local ledger of lifecycle events (deploy, rollback, upgrade, backup, restore, gc). */

export const HISTORY_FORMAT_VERSION = 1

export type HistoryAction = 'deploy' | 'rollback' | 'upgrade' | 'backup' | 'restore' | 'gc'

export interface HistoryEvent {
  v: typeof HISTORY_FORMAT_VERSION
  time: string
  action: HistoryAction
  result: 'ok' | 'failed'
  server: string
  guid?: string
  user?: string
  bundleId?: string
  mlflowVersion?: string
  /** The schema revision the extension reported after the action (the head of its MLflow). */
  revision?: string
  message?: string
}

/** Parses the JSON-lines ledger, skipping lines that are not events (a torn write, a hand edit). Pure. */
export function parseHistory(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    try {
      const event = JSON.parse(line) as HistoryEvent
      if (
        event &&
        event.v === HISTORY_FORMAT_VERSION &&
        typeof event.time === 'string' &&
        typeof event.action === 'string'
      )
        events.push(event)
    } catch {
      // skipped: see above
    }
  }
  return events
}

/** Events for one content item (or all), oldest first. Pure. */
export function filterHistory(events: HistoryEvent[], guid?: string): HistoryEvent[] {
  return events.filter((event) => !guid || event.guid === guid).sort((a, b) => a.time.localeCompare(b.time))
}

/** The schema head that a bundle was verified at, from its last successful deploy or rollback. Pure. */
export function verifiedRevisionOf(
  events: HistoryEvent[],
  guid: string,
  bundleId: string,
): {revision: string; mlflowVersion?: string} | undefined {
  const match = events
    .filter(
      (event) =>
        event.guid === guid &&
        event.bundleId === bundleId &&
        event.result === 'ok' &&
        event.revision &&
        (event.action === 'deploy' || event.action === 'rollback'),
    )
    .at(-1)
  return match ? {revision: match.revision!, mlflowVersion: match.mlflowVersion} : undefined
}
