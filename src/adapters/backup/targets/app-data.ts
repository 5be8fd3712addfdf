// An app-data directory: mlflow.db and artifacts/, as the extension keeps them in the content's data directory.
import {readdir, stat} from 'node:fs/promises'
import {join} from 'node:path'

import type {RestoreTarget, TargetInspection} from '../../../core/backup/restore.js'
import {UsageError} from '../../../errors.js'
import {SCRATCH_DIR} from '../../fs/scratch.js'
import {pathKind} from '../../fs/safe-fs.js'
import {SQLITE_HEADER, describeEntry, sqliteHeader, type TargetSite} from './site.js'

/** The lock file inside an app-data directory (target-lock.ts): never data, a restore and a backup leave it alone. */
const TARGET_LOCK = '.mlflowctl-target.lock'
/** Entries of an app-data directory that are not data a restore replaces: the extension's state, our scratch. */
const NOT_DATA = new Set([SCRATCH_DIR, 'mlflowctl', TARGET_LOCK])

async function inspectAppData(dir: string): Promise<TargetInspection> {
  if ((await pathKind(dir)) === 'missing') return {holdsData: false, found: [], foreign: []}
  const names = (await readdir(dir)).sort()
  const found: string[] = []
  const foreign: string[] = []
  for (const name of names) {
    if (NOT_DATA.has(name)) continue
    if (name === 'artifacts' && (await readdir(join(dir, name)).catch(() => ['?'])).length === 0) continue
    if (name === 'mlflow.db' && (await stat(join(dir, name))).size === 0) continue
    const mlflows = name === 'artifacts' || /^mlflow\.db(-wal|-shm|-journal)?$/.test(name)
    found.push(await describeEntry(dir, name))
    if (!mlflows) foreign.push(await describeEntry(dir, name).then((text) => text.replace(/ \(.*\)$/, '')))
  }
  // The parent of the data directory (a common slip): point at the child that holds mlflow.db.
  let didYouMean: string | undefined
  if (!names.includes('mlflow.db')) {
    for (const name of names)
      if ((await stat(join(dir, name, 'mlflow.db')).catch(() => undefined))?.isFile()) didYouMean ??= join(dir, name)
  }
  return {holdsData: found.length > 0, found, foreign, didYouMean}
}

export function appDataSite(target: Extract<RestoreTarget, {kind: 'app-data'}>): TargetSite {
  return {
    scratchRoot: () => target.dir,
    takesArtifactsTo: false,
    async checkKind() {
      const kind = await pathKind(target.dir)
      if (kind === 'file') {
        const hint =
          (await sqliteHeader(target.dir).catch(() => '')) === SQLITE_HEADER
            ? ` It is a SQLite database: pass --to sqlite:///${target.dir}.`
            : ''
        throw new UsageError(
          'TARGET_INVALID',
          `--to ${target.dir} is a file, not an app-data directory; nothing was changed.${hint}`,
        )
      }
      if (kind === 'other')
        throw new UsageError(
          'TARGET_INVALID',
          `--to ${target.dir} is neither a directory nor a file; nothing was changed.`,
        )
    },
    inspect: () => inspectAppData(target.dir),
    lockFiles: () => [{file: join(target.dir, TARGET_LOCK), where: target.dir}],
    legacyLive: target.dir,
    ensureDir: target.dir,
    safetyBackupOf: () => target.dir,
  }
}
