// What `replica status` prints for humans (--json prints the result itself).
import type {ReplicaStatusResult} from '../../core/replica-status.js'
import {formatBytes} from '../../core/units.js'
import {table} from '../table.js'

export function showReplicaStatus(result: ReplicaStatusResult): string {
  const lines = [`Replica ${result.url}`]
  const extension = result.extension
  if (extension) {
    lines.push(
      `  extension: ${extension.role}${extension.refusedBecause ? ` (${extension.refusedBecause})` : ''}, generation ${extension.generation ?? '-'}, WAL index ${extension.walIndex ?? '-'} at ${extension.offset ?? '-'}, lag ${extension.lagSeconds ?? '-'} s${extension.lastError ? `, last error: ${extension.lastError}` : ''}`,
    )
  }
  if (result.contentsError) lines.push(`  contents: not readable from here: ${result.contentsError}`)
  const contents = result.contents
  if (contents) {
    lines.push(
      contents.window
        ? `  restorable: ${contents.window.from} to ${contents.window.to} (newest commit ${contents.newestAgeSeconds} s ago)`
        : '  restorable: nothing yet (no finished generation)',
      `  size: ${formatBytes(contents.bytes)}, ${contents.artifacts.files} artifact files (${formatBytes(contents.artifacts.bytes)})`,
    )
    if (contents.generations.length > 0)
      lines.push(
        table(
          ['GENERATION', 'FROM', 'TO', 'SEGMENTS', 'SIZE'],
          contents.generations.map((g) => [g.id, g.startedAt, g.endsAt, String(g.segments), formatBytes(g.bytes)]),
        ),
      )
  }
  return lines.join('\n')
}
