import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {redact} from '../../core/redact.js'
import {ExternalError} from '../../errors.js'

export interface EnsureVenvOptions {
  cacheDir: string
  /** Base interpreter that creates the venv. */
  python: string
  pythonVersion: string
  requirements: string
  /** Installed on top (e.g. pytest for the test venvs); not part of the cache key. */
  extraPackages?: string[]
  onProgress?: (line: string) => void
}

export interface Venv {
  key: string
  path: string
  python: string
  reused: boolean
}

const READY = '.mlflowctl-ready'
const LOCK_STALE_MS = 30 * 60 * 1000

/** The cache key: the requirement lines (comments and blanks dropped) plus Python major.minor. Pure. */
export function venvKey(requirements: string, pythonVersion: string): string {
  const lines = requirements
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean)
  const minor = pythonVersion.split('.').slice(0, 2).join('.')
  return createHash('sha256').update(`${minor}\n${lines.join('\n')}`).digest('hex').slice(0, 16)
}

export function venvPath(cacheDir: string, key: string): string {
  return join(cacheDir, 'venvs', key)
}

/**
 * Returns a venv holding `requirements`, creating it under `cacheDir/venvs/<key>` if needed. Concurrent
 * callers wait on a lock directory; a venv without its ready marker (a killed install) is rebuilt.
 * @throws ExternalError VENV_FAILED / PIP_INSTALL_FAILED with the tail of pip's output (redacted).
 */
export async function ensureVenv(options: EnsureVenvOptions): Promise<Venv> {
  const key = venvKey(options.requirements, options.pythonVersion)
  const path = venvPath(options.cacheDir, key)
  const python = join(path, 'bin', 'python')
  if (existsSync(join(path, READY))) {
    await installExtras(python, options)
    return {key, path, python, reused: true}
  }
  await mkdir(join(options.cacheDir, 'venvs'), {recursive: true})
  const release = await acquireLock(`${path}.lock`, options.onProgress)
  try {
    if (existsSync(join(path, READY))) return {key, path, python, reused: true}
    await rm(path, {recursive: true, force: true})
    options.onProgress?.(`creating venv ${key}`)
    await runLogged(options.python, ['-m', 'venv', path], 'VENV_FAILED', options.onProgress)
    await writeFile(join(path, 'requirements.txt'), options.requirements)
    await runLogged(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '-r', join(path, 'requirements.txt')], 'PIP_INSTALL_FAILED', options.onProgress)
    await writeFile(join(path, READY), `${new Date().toISOString()}\n`)
  } finally {
    await release()
  }
  await installExtras(python, options)
  return {key, path, python, reused: false}
}

async function installExtras(python: string, options: EnsureVenvOptions): Promise<void> {
  const extras = options.extraPackages ?? []
  if (extras.length === 0) return
  await runLogged(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-q', ...extras], 'PIP_INSTALL_FAILED', options.onProgress)
}

async function acquireLock(lockDir: string, onProgress?: (line: string) => void): Promise<() => Promise<void>> {
  for (;;) {
    try {
      await mkdir(lockDir)
      await writeFile(join(lockDir, 'pid'), String(process.pid))
      return () => rm(lockDir, {recursive: true, force: true})
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      if (await lockIsStale(lockDir)) {
        await rm(lockDir, {recursive: true, force: true})
        continue
      }
      onProgress?.('waiting for another process that is building the same venv')
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
}

async function lockIsStale(lockDir: string): Promise<boolean> {
  try {
    const pid = Number(await readFile(join(lockDir, 'pid'), 'utf8'))
    if (pid > 0) {
      try {
        process.kill(pid, 0)
      } catch {
        return true // the builder died
      }
    }
    return Date.now() - (await stat(lockDir)).mtimeMs > LOCK_STALE_MS
  } catch {
    return false
  }
}

function runLogged(command: string, args: string[], code: string, onProgress?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {stdio: ['ignore', 'pipe', 'pipe']})
    const tail: string[] = []
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue
        tail.push(redact(line))
        if (tail.length > 20) tail.shift()
        // Only pip's milestones: progress bars and download lines would flood a non-TTY log.
        if (/^(Collecting|Installing|Successfully|ERROR)/.test(line.trim())) onProgress?.(redact(line.trim()).slice(0, 160))
      }
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    child.on('error', (error) => reject(new ExternalError(code, `Cannot run ${command}: ${error.message}.`)))
    child.on('close', (exitCode) => {
      if (exitCode === 0) resolve()
      else
        reject(
          new ExternalError(code, `${command} ${args.slice(0, 3).join(' ')} failed (exit ${exitCode}):\n${tail.join('\n')}`, {
            suggestions: ['Check that PyPI (or your pip index) is reachable and that the pinned versions exist.'],
          }),
        )
    })
  })
}
