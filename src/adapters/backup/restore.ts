// Real dependencies of `backup restore`: extraction under verification, the managed MLflow venv that
// creates the schema and loads the tables (templates/tools/restore_db.py), and file moves.
import {execFile} from 'node:child_process'
import {createWriteStream, writeFileSync} from 'node:fs'
import {access, cp, mkdir, readdir, rename, rm, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {createBackup} from '../../core/backup/create.js'
import {KNOWN_MLFLOW_TABLES} from '../../core/backup/tables.js'
import type {RestoreDeps, RestoreTarget} from '../../core/backup/restore.js'
import {parseDatabaseUrl} from '../../core/database-url.js'
import {redact} from '../../core/redact.js'
import {renderBundle} from '../../core/bundle.js'
import {NEWEST_KNOWN_MLFLOW} from '../../core/versions.js'
import {ExternalError, UsageError} from '../../errors.js'
import {withPostgres} from '../db/postgres.js'
import {EXTENSION_TEMPLATES, PACKAGE_ROOT, readTree} from '../fs/bundle-dir.js'
import {historyFile} from '../history-file.js'
import {detectPythonVersion, pythonCommand} from '../python/python.js'
import {ensureVenv} from '../python/venv.js'
import {verifyBackupArchive} from './archive.js'
import {createBackupDeps} from './index.js'
import {NO_CONNECT, connectHasData, uploadConnectRestore, type ConnectTransferOptions} from './connect-transfer.js'
import {scratchDir} from './repo.js'
import {localRepository, type BackupRepository} from './repository.js'

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

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false)
}

async function nonEmptyFile(path: string): Promise<boolean> {
  return stat(path).then((s) => s.size > 0, () => false)
}

/** The venv `dev up` uses for the newest MLflow (same requirements, so usually cached). */
async function mlflowPython(options: RestoreDepsOptions): Promise<string> {
  const python = pythonCommand(process.env)
  const pythonVersion = await detectPythonVersion(python)
  const bundle = renderBundle(await readTree(EXTENSION_TEMPLATES), {storage: 'local', mlflowVersion: NEWEST_KNOWN_MLFLOW, pythonVersion, toolVersion: 'restore'})
  const requirements = bundle.files.find((file) => file.path === 'requirements.txt')!.content.toString('utf8')
  const venv = await ensureVenv({cacheDir: options.cacheDir, python, pythonVersion, requirements, onProgress: options.onProgress})
  return venv.python
}

export function createRestoreDeps(options: RestoreDepsOptions): RestoreDeps {
  return {
    scratch: scratchDir,
    async extractVerified(archive, dir) {
      return verifyBackupArchive(archive, {
        passphrase: options.passphrase,
        async onEntry(name, data) {
          // Names were checked (no "..", no absolute paths, regular files only) before this is called.
          const path = join(dir, name)
          await mkdir(dirname(path), {recursive: true, mode: 0o700})
          await pipeline(data, createWriteStream(path, {mode: 0o600}))
        },
      })
    },
    async targetHasData(target) {
      if (target.kind === 'sqlite') return nonEmptyFile(target.path)
      if (target.kind === 'app-data') {
        const artifacts = await readdir(join(target.dir, 'artifacts')).catch(() => [])
        return (await nonEmptyFile(join(target.dir, 'mlflow.db'))) || artifacts.length > 0
      }
      if (target.kind === 'connect') return connectHasData(options.connect ?? NO_CONNECT, target.guid)
      // MLflow's tables only: another application's tables in the same database are not MLflow data.
      const names = await withPostgres(parseDatabaseUrl(target.url), async (client) => (await client.query<{name: string}>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'alembic_version'")).rows.map((row) => row.name))
      return names.some((name) => KNOWN_MLFLOW_TABLES.has(name))
    },
    async safetyBackup(target: RestoreTarget) {
      const where = target.kind === 'app-data' ? target.dir : target.kind === 'connect' ? join(options.dataDir, `connect-${target.guid}`) : target.kind === 'postgresql' ? join(options.dataDir, 'postgresql') : target.path
      const repository = options.safetyRepo ?? localRepository(join(dirname(where), 'mlflowctl-safety-backups'))
      options.onProgress(`taking a safety backup of ${where} into ${repository.display}`)
      const result = await createBackup(createBackupDeps({repository, dataDir: options.dataDir, onWarning: options.onWarning, connect: options.connect, passphrase: options.passphrase}), {
        source: target,
        repo: repository.display,
        artifacts: 'all',
        toolVersion: 'safety',
        // As private as the backup being restored: encrypted with its passphrase when it has one.
        encrypted: Boolean(options.passphrase),
      })
      return result.path
    },
    async loadDatabase(url, revision, dbDir, replace) {
      if (/[?&]auth=/.test(url)) throw new UsageError('TARGET_NOT_SUPPORTED', 'Restoring with token authentication (auth=…) is not implemented yet: use a password URL.')
      const python = await mlflowPython(options)
      options.onProgress(`creating the schema at ${revision} with MLflow ${NEWEST_KNOWN_MLFLOW} and loading the tables`)
      return new Promise((resolve, reject) => {
        const replaceFile = join(dbDir, 'replace-tables.json')
        if (replace) writeFileSync(replaceFile, JSON.stringify([...KNOWN_MLFLOW_TABLES]))
        // The URL (with its password) goes through the environment, not the process list.
        execFile(python, [RESTORE_SCRIPT, '-', revision, dbDir, ...(replace ? [replaceFile] : [])], {maxBuffer: 16 * 1024 * 1024, env: {...process.env, PYTHONUNBUFFERED: '1', MLFLOWCTL_RESTORE_URL: url}}, (error, stdout, stderr) => {
          // The script's one-line reason; SQLAlchemy appends the statement and its parameters, which stay out.
          const lines = stderr.trim().split('\n')
          const reason = lines.find((line) => /^(Restore failed|The |Table |Could not|Another restore)/.test(line)) ?? lines.at(-1) ?? ''
          const message = redact(reason.length > 400 ? `${reason.slice(0, 400)}…` : reason, [])
          if (!error) return resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as {tables: number; rows: number})
          if (/not empty/.test(message)) return reject(new UsageError('TARGET_NOT_EMPTY', message, {suggestions: ['Restore into an empty database.']}))
          reject(new ExternalError('RESTORE_FAILED', `Loading the backup failed; the target was left as it was. ${message}`))
        })
      })
    },
    async moveTree(from, to) {
      await mkdir(to, {recursive: true, mode: 0o700})
      let count = 0
      for (const entry of await readdir(from, {withFileTypes: true})) {
        const source = join(from, entry.name)
        const target = join(to, entry.name)
        if (entry.isDirectory()) {
          count += await this.moveTree(source, target)
          continue
        }
        try {
          await rename(source, target)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error
          await cp(source, target) // another file system
          await rm(source)
        }
        count++
      }
      return count
    },
    uploadToConnect: (guid, dir, force, keepRevision) => uploadConnectRestore(options.connect ?? NO_CONNECT, guid, dir, force, keepRevision),
    makeDir: async (path) => void (await mkdir(path, {recursive: true, mode: 0o700})),
    exists,
    rename,
    remove: (path) => rm(path, {recursive: true, force: true}),
    confirm: options.confirm,
    appendHistory: (event) => historyFile(options.dataDir).append(event),
    join,
    now: () => new Date(),
  }
}
