// A SQLite file (sqlite:///abs/path/mlflow.db); its artifacts go where --artifacts-to says.
import {stat} from 'node:fs/promises'
import {dirname} from 'node:path'

import type {RestoreTarget, TargetInspection} from '../../../core/backup/restore.js'
import {UsageError} from '../../../errors.js'
import {pathKind} from '../../fs/safe-fs.js'
import {SQLITE_HEADER, describeEntry, sqliteHeader, type TargetSite} from './site.js'

async function inspectSqlite(path: string): Promise<TargetInspection> {
  const found: string[] = []
  if ((await pathKind(path)) === 'file' && (await stat(path)).size > 0) {
    found.push(await describeEntry(dirname(path), path.slice(dirname(path).length + 1)))
  }
  for (const suffix of ['-wal', '-journal'])
    if ((await pathKind(`${path}${suffix}`)) === 'file' && (await stat(`${path}${suffix}`)).size > 0)
      found.push(`${path.slice(dirname(path).length + 1)}${suffix}`)
  return {holdsData: found.length > 0, found, foreign: []}
}

export function sqliteSite(target: Extract<RestoreTarget, {kind: 'sqlite'}>): TargetSite {
  return {
    scratchRoot: () => dirname(target.path),
    takesArtifactsTo: true,
    async checkKind() {
      const kind = await pathKind(target.path)
      if (kind === 'dir')
        throw new UsageError(
          'TARGET_INVALID',
          `--to sqlite:///${target.path} is a directory, not a database file; nothing was changed. For an app-data directory pass --to ${target.path}.`,
        )
      if (kind === 'other')
        throw new UsageError(
          'TARGET_INVALID',
          `--to sqlite:///${target.path} is not a regular file; nothing was changed.`,
        )
      if (kind === 'file' && (await stat(target.path)).size > 0 && (await sqliteHeader(target.path)) !== SQLITE_HEADER)
        throw new UsageError(
          'TARGET_INVALID',
          `${target.path} is not a SQLite database; refusing to replace it, even with --force. Nothing was changed.`,
        )
    },
    inspect: () => inspectSqlite(target.path),
    lockFiles: () => [{file: `${target.path}.mlflowctl-lock`, where: target.path}],
    legacyLive: target.path,
    safetyBackupOf: () => target.path,
  }
}
