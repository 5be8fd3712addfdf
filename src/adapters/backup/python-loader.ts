// Real dependencies of `backup restore`: extraction under verification into scratch space in the target's
// tree, the managed MLflow venv that creates the schema and loads the tables (templates/tools/restore_db.py),
// and the journaled swap (adapters/fs/swap.ts).
import {spawn} from 'node:child_process'
import {createWriteStream, writeFileSync} from 'node:fs'
import {cp, readFile, readdir, rename, rm, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {createInterface} from 'node:readline'
import {Worker} from 'node:worker_threads'
import {pipeline} from 'node:stream/promises'

import Database from 'better-sqlite3'
import {z} from 'zod'

import {KNOWN_MLFLOW_TABLES} from '../../core/backup/tables.js'
import type {BackupManifest} from '../../core/backup/format.js'
import type {RestoredDatabase} from '../../core/backup/deep-verify.js'
import type {PreparedDatabase, RowSource} from '../../core/backup/prepared-database.js'
import {redact} from '../../core/redact.js'
import {NEWEST_KNOWN_MLFLOW} from '../../core/versions.js'
import {CheckFailedError, ExternalError, UsageError} from '../../errors.js'
import {PACKAGE_ROOT} from '../fs/bundle-dir.js'
import {faultPoint} from '../fault.js'
import {fsFailure, makeDirs} from '../fs/safe-fs.js'
import {mlflowVenvPython} from '../python/mlflow-venv.js'
import {readExpectedManifest, verifyBackupArchive} from './archive.js'
import {type ConnectTransferOptions} from '../connect/ops-client.js'
import {type BackupRepository} from './repository.js'
import {postgresCommitted} from './targets/postgresql.js'
import {copyFilesIntoPostgres, copyFilesIntoSqlite, sqliteIntoPostgres} from './bulk-load.js'
import {tableFileOf} from './table-files.js'

const RESTORE_SCRIPT = join(PACKAGE_ROOT, 'templates', 'tools', 'restore_db.py')

export interface RestoreDepsOptions {
  cacheDir: string
  dataDir: string
  /** Where safety backups go (--repo, else next to the target). */
  safetyRepo?: BackupRepository
  passphrase?: string
  connect?: ConnectTransferOptions
  /** `--from-replica`: the "archive" is a replica directory, replayed as of `at` (Unix seconds; default the newest). */
  replica?: {at?: number}
  confirm(question: string): Promise<boolean>
  onProgress(line: string): void
  onWarning(message: string): void
}

/** The venv `dev up` uses for the newest MLflow (same requirements, so usually cached). */
export const mlflowPython = (options: RestoreDepsOptions): Promise<string> =>
  mlflowVenvPython(NEWEST_KNOWN_MLFLOW, {
    cacheDir: options.cacheDir,
    purpose: 'restore',
    onProgress: options.onProgress,
  })

/**
 * What the archive must hold: the sidecar beside a repository archive, else a first read-only pass. With it, an
 * entry the manifest does not list, or one larger than listed, is refused before it is written (a 1 GiB stowaway
 * once filled the disk first).
 */
export async function expectedManifest(archive: string, passphrase: string | undefined): Promise<BackupManifest> {
  return (await readExpectedManifest(archive)) ?? (await verifyBackupArchive(archive, {passphrase}))
}

/** Extracts an archive under `dir`, each entry checked against the expected manifest before a byte is written. */
export async function extractVerified(
  archive: string,
  dir: string,
  passphrase: string | undefined,
  expected: BackupManifest,
  onWritten?: (name: string, path: string) => void,
): Promise<BackupManifest> {
  const manifest = await verifyBackupArchive(archive, {
    passphrase,
    expected,
    async onEntry(name, data) {
      // Names were checked (no "..", no absolute paths, regular files only) before this is called.
      const path = join(dir, name)
      await makeDirs(dirname(path))
      await pipeline(data, createWriteStream(path, {mode: 0o600})).catch((error) =>
        Promise.reject(error instanceof CheckFailedError ? error : fsFailure(error, 'write', path)),
      )
      onWritten?.(name, path) // written whole, its size and SHA-256 checked while it streamed
    },
  })
  faultPoint('restore:extracted')
  return manifest
}

/** Moves (or copies across file systems) a directory's files into `to`. Returns the number of files. */
export async function moveTree(from: string, to: string): Promise<number> {
  await makeDirs(to)
  let count = 0
  for (const entry of await readdir(from, {withFileTypes: true})) {
    const source = join(from, entry.name)
    const target = join(to, entry.name)
    if (entry.isDirectory()) {
      count += await moveTree(source, target)
      continue
    }
    try {
      await rename(source, target)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw fsFailure(error, 'move a file to', target)
      await cp(source, target).catch((copyError) => Promise.reject(fsFailure(copyError, 'copy a file to', target)))
      await rm(source)
    }
    count++
  }
  return count
}

/** The swapped-in database opens, passes quick_check and is at the backup's revision. @throws CheckFailedError */
export function checkSqlite(path: string, revision: string, checked = false): void {
  const db = new Database(path, {readonly: true, fileMustExist: true})
  try {
    const check = checked
      ? ['ok']
      : (db.prepare('PRAGMA quick_check').all() as Array<{quick_check: string}>).map((row) => row.quick_check)
    if (check.join() !== 'ok')
      throw new CheckFailedError(
        'RESTORE_CHECK_FAILED',
        `The restored database failed SQLite's quick_check (${check.slice(0, 3).join('; ')}); the previous data was put back.`,
      )
    const found = (db.prepare('SELECT version_num FROM alembic_version').get() as {version_num: string} | undefined)
      ?.version_num
    if (found !== revision)
      throw new CheckFailedError(
        'RESTORE_CHECK_FAILED',
        `The restored database is at revision ${found ?? 'none'}, not ${revision}; the previous data was put back.`,
      )
  } finally {
    db.close()
  }
}

/**
 * What restore_db.py's phase lines carry after their name (its PHASES); test/data/shared-shapes.json holds examples
 * that both test suites check.
 */
export const LOADER_PHASES = {
  PREPARED: z.object({schema: z.string().nullable()}).passthrough(),
  READY: z.object({tables: z.number().int().nonnegative(), rows: z.number().int().nonnegative()}).passthrough(),
}

/** A phase line's payload, checked. @throws ExternalError RESTORE_FAILED when the loader says something else */
function parsePhase<K extends keyof typeof LOADER_PHASES>(name: K, text: string): z.infer<(typeof LOADER_PHASES)[K]> {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  const checked = LOADER_PHASES[name].safeParse(parsed)
  if (!checked.success)
    throw new ExternalError(
      'RESTORE_FAILED',
      `The loader's ${name} line is not what this mlflowctl expects (${text.slice(0, 200)}); the target was left as it was.`,
      {suggestions: ['Reinstall mlflowctl: its Python tools and the CLI come from one release.']},
    )
  return checked.data as z.infer<(typeof LOADER_PHASES)[K]>
}

/** restore_db.py's one-line reason; SQLAlchemy appends the statement and its parameters, which stay out. */
export function loaderError(stderr: string): Error {
  const lines = stderr.trim().split('\n')
  // Its own one-line messages first; else (a traceback) the exception's line, never a connecting line such as
  // "The above exception was the direct cause of the following exception:".
  const reason =
    lines.find((line) => /^(Restore failed|The (backup|target|restore)|Table |Could not|Another restore)/.test(line)) ??
    [...lines].reverse().find((line) => /^[A-Za-z_][\w.]*(Error|Exception|Interrupt): /.test(line)) ??
    lines.at(-1) ??
    ''
  const message = redact(reason.length > 400 ? `${reason.slice(0, 400)}…` : reason, [])
  if (/not empty/.test(message))
    return new UsageError('TARGET_NOT_EMPTY', message, {suggestions: ['Restore into an empty database.']})
  return new ExternalError('RESTORE_FAILED', `Loading the backup failed; the target was left as it was. ${message}`)
}

/** What starting the loader needs besides the target: see RestoreDeps.prepareDatabase. */
export interface LoaderOptions {
  replace?: boolean
  mark?: string
  /** The backup's tables (its manifest's row counts): the target must not hold them unless `replace`. */
  tables: string[]
  /** PostgreSQL: the swap commits only when commit() is called (else at once). */
  gated?: boolean
}

/** restore_db.py between its phases (see its docstring). */
export interface LoaderSession {
  /** PostgreSQL: the staging schema that holds MLflow's empty tables (keys and indexes dropped); null for SQLite. */
  stagingSchema: string | null
  /** LOAD: the loader reads the table files itself; or SKIP: the caller has loaded the rows. Then keys and indexes. */
  finishLoad(loadFiles: boolean): Promise<{tables: number; rows: number}>
  /** PostgreSQL: commits the swap (gated); SQLite: waits for the loader to exit. */
  commit(): Promise<void>
  /** Leaves the target as it was: the loader drops what it created and exits. */
  abort(): Promise<void>
}

/** Lines of a child's stdout, awaited one prefix at a time. */
function lineQueue(child: ReturnType<typeof spawn>, failure: () => Error) {
  const lines: string[] = []
  let closed = false
  let wake: (() => void) | undefined
  createInterface({input: child.stdout!}).on('line', (line) => {
    lines.push(line)
    wake?.()
  })
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      closed = true
      wake?.()
      resolve(code)
    }),
  )
  return {
    exited,
    /** The rest of the first line that starts with `word`; rejects when the loader exits first. */
    async expect(word: string): Promise<string> {
      for (;;) {
        const at = lines.findIndex((line) => line === word || line.startsWith(`${word} `))
        if (at !== -1)
          return lines
            .splice(0, at + 1)
            .at(-1)!
            .slice(word.length)
            .trim()
        if (closed) throw failure()
        await new Promise<void>((resolve) => (wake = resolve))
      }
    },
  }
}

/** Starts restore_db.py and waits for its first phase: the schema created by MLflow at `revision`. */
export async function startLoader(
  python: string,
  url: string,
  revision: string,
  dbDir: string,
  options: LoaderOptions,
): Promise<LoaderSession> {
  const replaceFile = join(dirname(dbDir), 'replace-tables.json')
  if (options.replace) writeFileSync(replaceFile, JSON.stringify([...KNOWN_MLFLOW_TABLES]))
  // The URL (with its password) goes through the environment, not the process list.
  const env = {
    ...process.env,
    PYTHONUNBUFFERED: '1',
    MLFLOWCTL_RESTORE_URL: url,
    MLFLOWCTL_RESTORE_GATE: options.gated ? '1' : '',
    MLFLOWCTL_RESTORE_MARK: options.mark ?? '',
    MLFLOWCTL_RESTORE_TABLES: JSON.stringify(options.tables),
    // The loader checks this before anything else: a CLI killed while Python still imports takes it along.
    MLFLOWCTL_PARENT_PID: String(process.pid),
  }
  const child = spawn(python, [RESTORE_SCRIPT, '-', revision, dbDir, ...(options.replace ? [replaceFile] : [])], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-64 * 1024)))
  child.stdin.on('error', () => undefined) // the loader may exit before reading its next command
  const queue = lineQueue(child, () => loaderError(stderr))
  const abort = async () => {
    child.stdin.end() // anything but its next command: the loader undoes what it made and exits
    await queue.exited
  }
  let prepared: {schema: string | null}
  try {
    prepared = parsePhase('PREPARED', await queue.expect('PREPARED'))
  } catch (error) {
    await abort()
    throw error
  }
  return {
    stagingSchema: prepared.schema,
    async finishLoad(loadFiles) {
      child.stdin.write(loadFiles ? 'LOAD\n' : 'SKIP\n')
      return parsePhase('READY', await queue.expect('READY'))
    },
    async commit() {
      if (options.gated) {
        child.stdin.write('COMMIT\n')
        // Gone before it said COMMITTED: the mark in the database tells whether the transaction committed.
        const committed = await queue.expect('COMMITTED').then(
          () => true,
          async () => postgresCommitted(url, options.mark ?? '').catch(() => false),
        )
        if (!committed) throw loaderError(stderr)
      }
      if ((await queue.exited) !== 0) throw loaderError(stderr)
    },
    abort,
  }
}

/**
 * The rows of `source` into a prepared target, by the fastest path for the pair (adapters/backup/bulk-load.ts);
 * format 1's JSON lines are loaded by restore_db.py itself. Then keys and indexes (restore_db.py).
 */
export function preparedDatabase(
  session: LoaderSession,
  url: string,
  onProgress: (line: string) => void,
): PreparedDatabase {
  return {
    async load(source: RowSource) {
      const intoPostgres = session.stagingSchema !== null
      const started = Date.now()
      let loaded: {tables: number; rows: number} | undefined
      if ('sqliteFile' in source) {
        if (!intoPostgres) throw new Error('A SQLite file goes into a SQLite target as it is, without a load.')
        loaded = await sqliteIntoPostgres(url, session.stagingSchema!, source.sqliteFile)
      } else if (await holdsCopyFiles(source.tableFiles)) {
        loaded = intoPostgres
          ? await copyFilesIntoPostgres(url, session.stagingSchema!, source.tableFiles)
          : await copyFilesIntoSqlite(url.slice('sqlite:///'.length), source.tableFiles)
      }
      const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`
      // PostgreSQL builds keys and indexes afterwards (restore_db.py); SQLite rebuilt its indexes during the load.
      const indexing = Date.now()
      if (loaded && intoPostgres)
        onProgress(`loaded ${loaded.rows} rows in ${seconds(started)}; building keys and indexes`)
      const finished = await session.finishLoad(!loaded)
      onProgress(
        loaded && intoPostgres
          ? `keys and indexes built in ${seconds(indexing)}`
          : `loaded ${(loaded ?? finished).rows} rows in ${seconds(started)}`,
      )
      faultPoint('restore:loaded')
      return loaded ?? finished
    },
    commit: () => session.commit(),
    abort: () => session.abort(),
  }
}

/** Format 2 of a PostgreSQL source (COPY text), as opposed to format 1's JSON lines. */
async function holdsCopyFiles(dbDir: string): Promise<boolean> {
  const schema = JSON.parse(await readFile(join(dbDir, 'schema.json'), 'utf8')) as {tables: Array<{name: string}>}
  const first = schema.tables.find((table) => table.name !== 'alembic_version') ?? schema.tables[0]
  return first !== undefined && (await tableFileOf(dbDir, first.name))?.encoding === 'copy'
}

/**
 * inspectRestoredSqlite's gate (quick_check, or integrity_check when `thorough`; foreign-key check, row counts, schema
 * objects) in a worker thread, so that the archive
 * keeps streaming meanwhile. Reads only.
 */
export function inspectSqliteInWorker(
  file: string,
  thorough = false,
): Promise<Pick<RestoredDatabase, 'integrity' | 'foreignKeyViolations' | 'rowCounts' | 'objects'>> {
  // Under the test runner this module is TypeScript (tsx), built it is JavaScript: the worker is its sibling either way.
  // From source, the worker registers tsx itself before it imports the TypeScript file: hooks that --import put in
  // place are not ready for a worker's own entry module.
  const here = import.meta.url
  const worker = here.endsWith('.ts')
    ? new Worker(
        `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./sqlite-check-worker.ts', here).href)}) })`,
        {eval: true, workerData: {file, thorough}, execArgv: []},
      )
    : new Worker(new URL('./sqlite-check-worker.js', here), {workerData: {file, thorough}})
  return new Promise((resolve, reject) => {
    worker.once('message', (message: {ok?: Awaited<ReturnType<typeof inspectSqliteInWorker>>; error?: string}) =>
      message.ok ? resolve(message.ok) : reject(new Error(`SQLite's checks of ${file} failed: ${message.error}`)),
    )
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`SQLite's checks of ${file} stopped (exit ${code}).`)))
  })
}

/** Takes tables out of extracted table files: their files and their entries in schema.json. */
export async function dropTableFiles(dbDir: string, tables: string[]): Promise<void> {
  const schemaFile = join(dbDir, 'schema.json')
  const schema = JSON.parse(await readFile(schemaFile, 'utf8')) as {tables: Array<{name: string}>}
  schema.tables = schema.tables.filter((table) => !tables.includes(table.name))
  await writeFile(schemaFile, JSON.stringify(schema), {mode: 0o600})
  for (const table of tables)
    for (const suffix of ['.jsonl', '.copy']) await rm(join(dbDir, `${table}${suffix}`), {force: true})
}
