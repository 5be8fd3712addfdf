/** Where a backup comes from and goes to, as the fixed interface spells them. Pure. */
import {UsageError} from '../../errors.js'
import type {BackupSourceSpec} from './create.js'

/** @throws UsageError SOURCE_NOT_SUPPORTED for the sources that this version cannot read yet */
export function parseBackupSource(
  raw: string,
  resolvePath: (path: string) => string,
  redactUrl: (url: string) => string,
): BackupSourceSpec {
  if (raw.startsWith('sqlite:///')) {
    const path = decodeURIComponent(raw.slice('sqlite:///'.length))
    if (!path.startsWith('/'))
      throw new UsageError(
        'SOURCE_INVALID',
        `--source ${raw}: SQLite needs an absolute path (sqlite:////abs/path/mlflow.db).`,
      )
    return {kind: 'sqlite', path}
  }
  if (/^postgres(ql)?(\+\w+)?:\/\//.test(raw)) return {kind: 'postgresql', url: raw, display: redactUrl(raw)}
  if (raw.startsWith('connect:')) return {kind: 'connect', guid: parseGuid(raw, '--source')}
  if (/^mssql(\+\w+)?:\/\//.test(raw)) {
    throw new UsageError(
      'SOURCE_NOT_SUPPORTED',
      `--source ${redactUrl(raw)}: this mlflowctl version backs up app-data directories, SQLite files, PostgreSQL and connect:GUID; SQL Server is not implemented yet.`,
    )
  }
  return {kind: 'app-data', dir: resolvePath(raw)}
}

/** connect:GUID → GUID. @throws UsageError GUID_INVALID */
export function parseGuid(raw: string, flag: string): string {
  return contentGuid(raw.startsWith('connect:') ? raw.slice('connect:'.length) : '', flag, raw, 'connect:GUID,')
}

/** A bare content GUID (--guid). @throws UsageError GUID_INVALID */
export function parseContentGuid(raw: string, flag: string): string {
  return contentGuid(raw.trim(), flag, raw, 'a')
}

function contentGuid(guid: string, flag: string, raw: string, expected: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(guid))
    throw new UsageError(
      'GUID_INVALID',
      `${flag} ${raw}: expected ${expected} the content's GUID from its URL or info panel.`,
    )
  return guid.toLowerCase()
}

/** A source or target as the operator spells it (a PostgreSQL URL redacted). Pure. */
export const describeTarget = (target: BackupSourceSpec) =>
  target.kind === 'app-data'
    ? target.dir
    : target.kind === 'sqlite'
      ? `sqlite:///${target.path}`
      : target.kind === 'connect'
        ? `connect:${target.guid}`
        : target.display

/** The two commands that settle a conflicting recovery of `target`, spelled to be pasted (no password). Pure. */
export function settleCommands(target: BackupSourceSpec, artifactsTo: string | undefined): string[] {
  const base = [
    'mlflowctl backup recover --target',
    target.kind === 'postgresql' ? "'<the same URL>'" : describeTarget(target),
    ...(artifactsTo ? ['--artifacts-to', artifactsTo] : []),
  ].join(' ')
  return [
    `Keep what is in place now (the restored data and what was written since): ${base} --keep live`,
    `Or put the previous data back (what is in place now is kept beside it): ${base} --keep previous`,
  ]
}
