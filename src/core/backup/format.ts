/**
 * The backup archive (documented in the README): a gzip-compressed tar with
 *
 * - format 1 (every archive made before format 2): `db/schema.json`, tables in foreign-key
 *   order with their columns and declared types, and `db/<table>.jsonl`, one JSON array per row, in column order,
 *   typed (see encodeValue);
 * - format 2: for SQLite, app-data and connect: sources `db/mlflow.db`, the online-backup copy of the database
 *   file itself; for PostgreSQL `db/schema.json` and `db/<table>.copy`, each table's COPY text as the server wrote
 *   it (no per-row encoding on the way in or out in either case);
 * - `artifacts/<path>`: the artifact files;
 * - `manifest.json`, last: what the archive holds, with {path, size, sha256} for every other entry.
 *
 * Pure: names, manifest checks and the value encoding. Reading and writing streams is the adapters' job.
 */
/** Every format this version reads. */
export const READABLE_FORMATS = [1, 2] as const
export type BackupFormat = (typeof READABLE_FORMATS)[number]
/** Format 2's database entry: the SQLite file. */
export const SQLITE_FILE_ENTRY = 'db/mlflow.db'

/** Whether the archive carries the SQLite file itself (format 2 of a SQLite source). Pure. */
export const holdsSqliteFile = (manifest: Pick<BackupManifest, 'files'>) =>
  manifest.files.some((file) => file.path === SQLITE_FILE_ENTRY)

/** Whether the tables are COPY text (format 2 of a PostgreSQL source). Pure. */
export const holdsCopyText = (manifest: Pick<BackupManifest, 'files'>) =>
  manifest.files.some((file) => /^db\/[^/]+\.copy$/.test(file.path))
export const MANIFEST_ENTRY = 'manifest.json'
export const ARCHIVE_SUFFIX = '.mlflowctl-backup.tar.gz'

export interface BackupFileEntry {
  path: string
  size: number
  sha256: string
}

export interface BackupManifest {
  format: BackupFormat
  id: string
  createdAt: string
  toolVersion: string
  source: {
    kind: 'app-data' | 'sqlite' | 'postgresql' | 'mssql' | 'connect'
    location: string
    engine: 'sqlite' | 'postgresql' | 'mssql'
    contentGuid?: string
  }
  mlflowVersion?: string
  alembicRevision: string | null
  /** Names only, never values. */
  envNames: string[]
  rowCounts: Record<string, number>
  /** `root`: where the artifacts were backed up from (a directory or an s3://, wasbs://, gs:// URL), which absolute
   * artifact locations in the rows start with; a restore that moves the store rewrites them to the new root. */
  artifacts: {mode: 'all' | 'referenced' | 'none'; files: number; bytes: number; root?: string}
  /** AES-256-GCM with a scrypt-derived key; the sidecar copy of this manifest stays readable for `list`. */
  encrypted?: boolean
  files: BackupFileEntry[]
}

export interface TableSchema {
  name: string
  columns: Array<{name: string; type: string}>
}

/** Backup IDs sort by time: 20261128T061500Z-ab12cd. */
export function backupId(now: Date, random: string): string {
  return `${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${random}`
}

/**
 * Why an entry name is unsafe to extract, or undefined when it is fine: absolute paths, `..`, empty or `.` parts,
 * NUL and anything outside db/, artifacts/ and the manifest are refused (tar path traversal). A backslash is an
 * ordinary character of a Linux file name (`a\\b.txt` is one file, kept byte for byte), but no part between slashes
 * or backslashes may be `..`, so that the name cannot climb out where a backslash separates either. `backup
 * create` applies the same rule, so it never writes an archive that verify or restore would refuse.
 */
export function unsafeEntryName(name: string): string | undefined {
  if (name.includes('\0')) return 'contains a NUL'
  if (name.startsWith('/') || name.startsWith('\\') || /^[A-Za-z]:/.test(name)) return 'is an absolute path'
  if (name.split(/[/\\]/).some((part) => part === '..')) return 'climbs out of the archive with ".."'
  if (name !== MANIFEST_ENTRY && !name.startsWith('db/') && !name.startsWith('artifacts/'))
    return 'is not under db/ or artifacts/'
  if (name.split('/').some((part) => part === '' || part === '.'))
    return 'has an empty or "." part (two names for one file)'
  return undefined
}

export type ArchiveProblem =
  | {kind: 'missing'; path: string}
  | {kind: 'extra'; path: string}
  | {kind: 'size'; path: string; expected: number; actual: number}
  | {kind: 'checksum'; path: string}
  | {kind: 'rows'; path: string; expected: number; actual: number}

/** Compares what the archive held with what its manifest lists. Pure. */
export function compareWithManifest(
  manifest: BackupManifest,
  seen: Map<string, {size: number; sha256: string}>,
): ArchiveProblem[] {
  const problems: ArchiveProblem[] = []
  const listed = new Set(manifest.files.map((file) => file.path))
  for (const file of manifest.files) {
    const actual = seen.get(file.path)
    if (!actual) problems.push({kind: 'missing', path: file.path})
    else if (actual.size !== file.size)
      problems.push({kind: 'size', path: file.path, expected: file.size, actual: actual.size})
    else if (actual.sha256 !== file.sha256) problems.push({kind: 'checksum', path: file.path})
  }
  for (const path of seen.keys()) if (!listed.has(path)) problems.push({kind: 'extra', path})
  return problems
}

export function describeProblem(problem: ArchiveProblem): string {
  switch (problem.kind) {
    case 'missing':
      return `${problem.path} is listed in the manifest but missing from the archive`
    case 'extra':
      return `${problem.path} is in the archive but not in the manifest`
    case 'size':
      return `${problem.path} has ${problem.actual} bytes, the manifest says ${problem.expected}`
    case 'checksum':
      return `${problem.path} does not match its SHA-256 in the manifest`
    case 'rows':
      return `${problem.path} holds ${problem.actual} rows, the manifest counts ${problem.expected}`
  }
}

/** Format 2: the rows of each table in the archived SQLite file against the manifest's counts. Pure. */
export function compareSqliteRowCounts(manifest: BackupManifest, counts: Record<string, number>): ArchiveProblem[] {
  return Object.entries(manifest.rowCounts)
    .filter(([table, expected]) => (counts[table] ?? 0) !== expected)
    .map(([table, expected]) => ({
      kind: 'rows',
      path: `${SQLITE_FILE_ENTRY} table ${table}`,
      expected,
      actual: counts[table] ?? 0,
    }))
}

/**
 * Compares the rows in each table file (its lines: one row per line) with the manifest's row counts, so that a
 * manifest whose counts were edited is caught even when every checksum still matches. Pure.
 */
export function compareRowCounts(manifest: BackupManifest, linesByEntry: Map<string, number>): ArchiveProblem[] {
  const problems: ArchiveProblem[] = []
  for (const [table, expected] of Object.entries(manifest.rowCounts)) {
    for (const path of [`db/${table}.jsonl`, `db/${table}.copy`]) {
      const actual = linesByEntry.get(path)
      if (actual !== undefined && actual !== expected) problems.push({kind: 'rows', path, expected, actual})
    }
  }
  for (const [path, actual] of linesByEntry) {
    const table = path.slice('db/'.length).replace(/\.(jsonl|copy)$/, '')
    if (!(table in manifest.rowCounts)) problems.push({kind: 'rows', path, expected: 0, actual})
  }
  return problems
}

/**
 * Whether an entry may be written at all, judged from its tar header before its bytes: it must be listed in
 * the manifest the archive is expected to carry, with the same size. Returns the reason it may not. Pure.
 */
export function unexpectedEntry(expected: BackupManifest, name: string, declaredSize: number): string | undefined {
  const listed = expected.files.find((file) => file.path === name)
  if (!listed) return `entry ${name} is not in the backup's manifest`
  if (listed.size !== declaredSize)
    return `entry ${name} declares ${declaredSize} bytes, the manifest says ${listed.size}`
  return undefined
}

/** Whether the manifest inside the archive is the one expected (the listing sidecar, or a first pass). Pure. */
export function sameManifest(inside: BackupManifest, expected: BackupManifest): boolean {
  const files = (manifest: BackupManifest) =>
    JSON.stringify([...manifest.files].sort((a, b) => a.path.localeCompare(b.path)))
  return (
    inside.id === expected.id &&
    files(inside) === files(expected) &&
    JSON.stringify(inside.rowCounts) === JSON.stringify(expected.rowCounts) &&
    inside.alembicRevision === expected.alembicRevision
  )
}

/** Checks the manifest's own shape. Returns the reason it is unusable, or undefined. */
export function invalidManifest(value: unknown): string | undefined {
  const manifest = value as Partial<BackupManifest> | null
  if (!manifest || typeof manifest !== 'object') return 'manifest.json is not a JSON object'
  if (!READABLE_FORMATS.includes(manifest.format as BackupFormat))
    return `backup format ${String(manifest.format)} is not supported (this mlflowctl reads formats ${READABLE_FORMATS.join(' and ')})`
  if (typeof manifest.id !== 'string' || typeof manifest.createdAt !== 'string' || !Array.isArray(manifest.files))
    return 'manifest.json lacks id, createdAt or files'
  for (const file of manifest.files) {
    if (typeof file?.path !== 'string' || typeof file.size !== 'number' || !/^[0-9a-f]{64}$/.test(String(file.sha256)))
      return `manifest.json lists an invalid file entry (${JSON.stringify(file).slice(0, 80)})`
    const unsafe = unsafeEntryName(file.path)
    if (unsafe) return `manifest.json lists ${file.path}, which ${unsafe}`
  }
  if (
    manifest.format === 2 &&
    manifest.alembicRevision &&
    !manifest.files.some((f) => f.path === SQLITE_FILE_ENTRY || f.path === 'db/schema.json')
  )
    return `a format 2 manifest must list ${SQLITE_FILE_ENTRY} or db/schema.json`
  return undefined
}

/**
 * Row values as JSON, without losing what JSON cannot say: bytes ({"$b": base64}), integers beyond
 * 2^53 ({"$i": "123"}) and non-finite floats ({"$f": "NaN"}; MLflow metrics may be NaN or ±Infinity).
 */
export function encodeValue(value: unknown): unknown {
  if (value === null || value === undefined) return null
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : {$i: value.toString()}
  if (typeof value === 'number') return Number.isFinite(value) ? value : {$f: String(value)}
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return {$b: Buffer.from(value).toString('base64')}
  if (value instanceof Date) return value.toISOString()
  return value
}

/** The environment variable an encrypted archive's passphrase may come from (--passphrase-file wins). */
export const PASSPHRASE_ENV = 'MLFLOWCTL_BACKUP_PASSPHRASE'
