/** Where a backup comes from and goes to, as the fixed interface spells them. Pure. */
import {UsageError} from '../../errors.js'
import type {BackupSourceSpec} from './create.js'

/** @throws UsageError SOURCE_NOT_SUPPORTED for the sources that this version cannot read yet */
export function parseBackupSource(raw: string, resolvePath: (path: string) => string, redactUrl: (url: string) => string): BackupSourceSpec {
  if (raw.startsWith('sqlite:///')) {
    const path = decodeURIComponent(raw.slice('sqlite:///'.length))
    if (!path.startsWith('/')) throw new UsageError('SOURCE_INVALID', `--source ${raw}: SQLite needs an absolute path (sqlite:////abs/path/mlflow.db).`)
    return {kind: 'sqlite', path}
  }
  if (/^postgres(ql)?(\+\w+)?:\/\//.test(raw)) return {kind: 'postgresql', url: raw, display: redactUrl(raw)}
  if (/^mssql(\+\w+)?:\/\//.test(raw) || raw.startsWith('connect:')) {
    throw new UsageError('SOURCE_NOT_SUPPORTED', `--source ${redactUrl(raw)}: this mlflowctl version backs up app-data directories, SQLite files and PostgreSQL; SQL Server and connect:GUID sources are not implemented yet.`)
  }
  return {kind: 'app-data', dir: resolvePath(raw)}
}

/** A directory (resolved) or an object-store URL (kept). */
export function parseBackupRepo(raw: string, resolvePath: (path: string) => string): string {
  return /^(s3|wasbs|gs):\/\//.test(raw) ? raw : resolvePath(raw)
}
