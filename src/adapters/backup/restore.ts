// Real dependencies of `backup restore`: extraction under verification into scratch space in the target's
// tree, the managed MLflow venv that creates the schema and loads the tables (templates/tools/restore_db.py),
// and the journaled swap (adapters/fs/swap.ts).
import {spawn} from 'node:child_process'
import {createWriteStream, writeFileSync} from 'node:fs'
import {cp, readdir, rename, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {createInterface} from 'node:readline'
import {pipeline} from 'node:stream/promises'

import Database from 'better-sqlite3'

import {KNOWN_MLFLOW_TABLES} from '../../core/backup/tables.js'
import type {RestoreDeps} from '../../core/backup/restore.js'
import {redact} from '../../core/redact.js'
import {NEWEST_KNOWN_MLFLOW} from '../../core/versions.js'
import {CheckFailedError, ExternalError, UsageError} from '../../errors.js'
import {PACKAGE_ROOT} from '../fs/bundle-dir.js'
import {faultPoint} from '../fault.js'
import {fsFailure, makeDirs} from '../fs/safe-fs.js'
import {mlflowVenvPython} from '../python/mlflow-venv.js'
import {readExpectedManifest, verifyBackupArchive} from './archive.js'
import {type ConnectTransferOptions} from './connect-transfer.js'
import {type BackupRepository} from './repository.js'
import {postgresCommitted} from './restore-target.js'

const RESTORE_SCRIPT = join(PACKAGE_ROOT, 'templates', 'tools', 'restore_db.py')

export interface RestoreDepsOptions {
  cacheDir: string
  dataDir: string
  /** Where safety backups go (--repo, else next to the target). */
  safetyRepo?: BackupRepository
  passphrase?: string
  connect?: ConnectTransferOptions
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

/** Extracts an archive under `dir`, each entry checked against the expected manifest before a byte is written. */
export async function extractVerified(
  archive: string,
  dir: string,
  passphrase: string | undefined,
): Promise<Awaited<ReturnType<typeof verifyBackupArchive>>> {
  // The sidecar beside a repository archive, else a first read-only pass: an entry the manifest does not list,
  // or one larger than listed, is refused before it is written (a 1 GiB stowaway once filled the disk first).
  const expected = (await readExpectedManifest(archive)) ?? (await verifyBackupArchive(archive, {passphrase}))
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

type LoadOptions = Parameters<RestoreDeps['loadDatabase']>[3]

/** Runs restore_db.py; with a gate (PostgreSQL), its swap commits only when the gate calls commit(). */
export async function runLoader(
  python: string,
  url: string,
  revision: string,
  dbDir: string,
  options: LoadOptions = {},
): Promise<{tables: number; rows: number}> {
  const replaceFile = join(dbDir, 'replace-tables.json')
  if (options.replace) writeFileSync(replaceFile, JSON.stringify([...KNOWN_MLFLOW_TABLES]))
  // The URL (with its password) goes through the environment, not the process list.
  const env = {
    ...process.env,
    PYTHONUNBUFFERED: '1',
    MLFLOWCTL_RESTORE_URL: url,
    MLFLOWCTL_RESTORE_GATE: options.gate ? '1' : '',
    MLFLOWCTL_RESTORE_MARK: options.mark ?? '',
  }
  const child = spawn(python, [RESTORE_SCRIPT, '-', revision, dbDir, ...(options.replace ? [replaceFile] : [])], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-64 * 1024)))
  child.stdin.on('error', () => undefined) // the loader may exit before reading its go-ahead
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  let result: string | undefined
  let gateError: unknown
  let gated: Promise<void> = Promise.resolve()
  let onCommitted: (() => void) | undefined
  for await (const line of createInterface({input: child.stdout})) {
    if (line === 'READY' && options.gate) {
      const commit = () =>
        new Promise<void>((resolve, reject) => {
          onCommitted = resolve
          child.stdin.write('COMMIT\n')
          // Gone before it said COMMITTED: the mark in the database tells whether the transaction committed.
          void exited.then(async () =>
            (await postgresCommitted(url, options.mark ?? '').catch(() => false))
              ? resolve()
              : reject(loaderError(stderr)),
          )
        })
      gated = options.gate(commit).catch((error) => {
        gateError = error
        child.stdin.end() // anything but COMMIT: the loader aborts, the database stays as it was
      })
    } else if (line === 'COMMITTED') onCommitted?.()
    else if (line.startsWith('{')) result = line
  }
  const code = await exited
  await gated
  if (gateError) throw gateError
  if (code !== 0 || !result) throw loaderError(stderr)
  return JSON.parse(result) as {tables: number; rows: number}
}
