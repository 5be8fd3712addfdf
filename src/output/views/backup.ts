// What the backup commands print for humans (--json prints the result itself).
import type {DeepVerifyResult} from '../../core/backup/deep-verify.js'
import type {CreateResult} from '../../core/backup/create.js'
import type {RestoreResult} from '../../core/backup/restore.js'
import {formatBytes} from '../../core/units.js'
import {table} from '../table.js'
import type {RecoverResult} from '../../core/backup/recover.js'

export function showBackupCreated(result: CreateResult): string {
  const contents = `${result.tables} tables (${result.rows} rows), ${result.files} artifact files, revision ${result.revision ?? 'none'}`
  const taken = result.snapshot
  if (!taken) return `Backup ${result.id}\n  ${result.path}\n  ${formatBytes(result.bytes)}: ${contents}`
  const parent = taken.parent ? `, ${taken.filesUnchanged} unchanged since ${taken.parent}` : ''
  return `Snapshot ${result.id}\n  ${result.path}\n  ${contents}\n  read ${taken.filesNew} files (${formatBytes(taken.bytesRead)})${parent}; added ${formatBytes(taken.bytesAdded)} (${taken.blobsAdded} new blobs)`
}

export function showRecovered(result: RecoverResult): string {
  if (result.actions.length === 0)
    return `Nothing to settle in ${result.target}: no interrupted restore left anything there.`
  return result.actions.map((action) => `${result.target}: ${action}`).join('\n')
}

export function showRestored(result: RestoreResult): string {
  const safety = result.safetyBackup ? `\nSafety backup of the previous data: ${result.safetyBackup}` : ''
  const moved = result.artifactLocations
  const locations = moved
    ? `\nArtifact locations rewritten from ${moved.from} to ${moved.to}: ${moved.total} rows${
        moved.total
          ? ` (${Object.entries(moved.rewritten)
              .map(([column, count]) => `${column} ${count}`)
              .join(', ')})`
          : ''
      }.`
    : ''
  const dropped = result.droppedObjects?.length
    ? `\nLeft out (not MLflow's, --drop-foreign-objects): ${result.droppedObjects.join(', ')}.`
    : ''
  return `Restored ${result.backupId} into ${result.target}: ${result.tables} tables, ${result.rows} rows, ${result.artifactFiles} artifact files, schema ${result.revision}.${locations}${dropped}${safety}`
}

export function showVerified(
  manifest: {id: string; files: unknown[]; alembicRevision?: string | null},
  deep?: DeepVerifyResult,
): string {
  const deepLine = deep
    ? `\nDeep: ${deep.tables} tables and ${deep.rows} rows restored and checked; ${deep.unchecked} references outside the backed-up store not checked${deep.uncheckedReferences?.length ? `:\n${deep.uncheckedReferences.map((reference) => `  ${reference}`).join('\n')}` : '.'}`
    : ''
  return `Intact: ${manifest.id}, ${manifest.files.length} files, revision ${manifest.alembicRevision ?? 'none'}.${deepLine}`
}

export interface BackupListRow {
  id: string
  createdAt: string
  bytes: number
  rows: number
  artifactFiles: number
  verifiedAt: string | null
  kind: 'archive' | 'snapshot'
}

export function showBackupList(backups: BackupListRow[]): string {
  if (backups.length === 0) return 'No backups.'
  return table(
    ['ID', 'KIND', 'CREATED', 'SIZE', 'ROWS', 'ARTIFACTS', 'VERIFIED'],
    backups.map((b) => [
      b.id,
      b.kind,
      b.createdAt,
      // A snapshot's size is what it added to the repository (the rest it shares with other snapshots).
      b.kind === 'snapshot' ? `+${formatBytes(b.bytes)}` : formatBytes(b.bytes),
      String(b.rows),
      String(b.artifactFiles),
      b.verifiedAt ?? 'no',
    ]),
  )
}
