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
  /** uv missing or failing: the fallback to pip is said here (default: onProgress). */
  onWarning?: (message: string) => void
}

export interface Venv {
  key: string
  path: string
  python: string
  reused: boolean
}

const READY = '.mlflowctl-ready'
const LOCK_STALE_MS = 30 * 60 * 1000
/**
 * uv (PyPI; Astral's installer, widely used, a static binary in its wheel) installs a venv's requirements in
 * seconds where pip takes minutes. Only the environments mlflowctl and the tests build use it: Connect installs a
 * bundle's requirements.txt with its own installer, and the bundle does not depend on uv.
 */
const UV_REQUIREMENT = 'uv==0.13.9'

/** The cache key: the requirement lines (comments and blanks dropped) plus Python major.minor. Pure. */
export function venvKey(requirements: string, pythonVersion: string): string {
  const lines = requirements
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean)
  const minor = pythonVersion.split('.').slice(0, 2).join('.')
  return createHash('sha256')
    .update(`${minor}\n${lines.join('\n')}`)
    .digest('hex')
    .slice(0, 16)
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
    await createVenv(path, options)
    await writeFile(join(path, 'requirements.txt'), options.requirements)
    await install(python, ['-r', join(path, 'requirements.txt')], options)
    await writeFile(join(path, READY), `${new Date().toISOString()}\n`)
  } finally {
    await release()
  }
  await installExtras(python, options)
  return {key, path, python, reused: false}
}

/**
 * A plain venv with pip in it, as users expect. uv makes it (seeded with pip from uv's cache) in well under a second
 * where `python -m venv` unpacks pip for about four seconds of CPU; without uv, or when uv cannot, Python's own venv.
 */
async function createVenv(path: string, options: EnsureVenvOptions): Promise<void> {
  const args = ['venv', '--seed', '--no-python-downloads', '--python', options.python, path]
  if (await viaUv(args, 'VENV_FAILED', 'create the venv', 'using python -m venv', options)) return
  await rm(path, {recursive: true, force: true})
  await runLogged(options.python, ['-m', 'venv', path], 'VENV_FAILED', options.onProgress)
}

/**
 * Runs uv with `args` when it can be had; false (with a warning saying `what` failed and the `fallback`) when it
 * cannot, or fails: the caller then does the same work without it.
 */
async function viaUv(
  args: string[],
  code: string,
  what: string,
  fallback: string,
  options: EnsureVenvOptions,
): Promise<boolean> {
  const uv = process.env.MLFLOWCTL_INSTALLER === 'pip' ? undefined : await uvBinary(options)
  if (!uv) return false
  try {
    await runLogged(uv, args, code, options.onProgress, uvEnvironment())
    return true
  } catch (error) {
    ;(options.onWarning ?? options.onProgress)?.(
      `uv could not ${what} (${(error as Error).message.split('\n')[0]}); ${fallback}.`,
    )
    return false
  }
}

async function installExtras(python: string, options: EnsureVenvOptions): Promise<void> {
  const extras = options.extraPackages ?? []
  if (extras.length === 0) return
  await install(python, extras, options)
}

/** Installs into the venv of `python`: with uv, else (or when uv fails) with pip, which is then the one to trust. */
async function install(python: string, args: string[], options: EnsureVenvOptions): Promise<void> {
  const uvArgs = ['pip', 'install', '--python', python, ...args]
  if (await viaUv(uvArgs, 'PIP_INSTALL_FAILED', `install ${args.join(' ')}`, 'trying pip, which is slower', options))
    return
  await runLogged(
    python,
    ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', ...args],
    'PIP_INSTALL_FAILED',
    options.onProgress,
  )
}

/** pip's settings as uv reads them (uv ignores pip.conf and PIP_*): index, extra index, find-links, CA bundle. */
export function uvEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const mapped: NodeJS.ProcessEnv = {UV_NATIVE_TLS: '1'}
  if (env.PIP_INDEX_URL && !env.UV_DEFAULT_INDEX) mapped.UV_DEFAULT_INDEX = env.PIP_INDEX_URL
  if (env.PIP_EXTRA_INDEX_URL && !env.UV_INDEX) mapped.UV_INDEX = env.PIP_EXTRA_INDEX_URL
  if (env.PIP_FIND_LINKS && !env.UV_FIND_LINKS) mapped.UV_FIND_LINKS = env.PIP_FIND_LINKS
  if (env.PIP_CERT && !env.SSL_CERT_FILE) mapped.SSL_CERT_FILE = env.PIP_CERT
  return {...env, ...mapped}
}

const uvByCache = new Map<string, Promise<string | undefined>>()

/**
 * The uv binary from a small bootstrap venv under the cache (CACHE/tools/uv-VERSION, built once with pip), or
 * undefined with a warning when it cannot be had: everything then falls back to pip.
 */
function uvBinary(options: EnsureVenvOptions): Promise<string | undefined> {
  const dir = join(options.cacheDir, 'tools', UV_REQUIREMENT.replace('==', '-'))
  let pending = uvByCache.get(dir)
  if (!pending) {
    pending = (async () => {
      const bin = join(dir, 'bin', 'uv')
      if (existsSync(join(dir, READY))) return bin
      await mkdir(join(options.cacheDir, 'tools'), {recursive: true})
      const release = await acquireLock(`${dir}.lock`, options.onProgress)
      try {
        if (existsSync(join(dir, READY))) return bin
        await rm(dir, {recursive: true, force: true})
        options.onProgress?.(`installing ${UV_REQUIREMENT} (once) into ${dir}`)
        await runLogged(options.python, ['-m', 'venv', dir], 'VENV_FAILED', options.onProgress)
        await runLogged(
          join(dir, 'bin', 'python'),
          [
            '-m',
            'pip',
            'install',
            '--disable-pip-version-check',
            '--no-input',
            '--progress-bar',
            'off',
            UV_REQUIREMENT,
          ],
          'PIP_INSTALL_FAILED',
          options.onProgress,
        )
        await writeFile(join(dir, READY), `${new Date().toISOString()}\n`)
        return bin
      } catch (error) {
        ;(options.onWarning ?? options.onProgress)?.(
          `uv is not available (${(error as Error).message.split('\n')[0]}); installing with pip, which is slower.`,
        )
        return undefined
      } finally {
        await release()
      }
    })()
    uvByCache.set(dir, pending)
  }
  return pending
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

function runLogged(
  command: string,
  args: string[],
  code: string,
  onProgress?: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {stdio: ['ignore', 'pipe', 'pipe'], env})
    const tail: string[] = []
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue
        tail.push(redact(line))
        if (tail.length > 20) tail.shift()
        // Only the installers' milestones (pip's, uv's): progress bars and download lines would flood a non-TTY log.
        if (/^(Collecting|Installing|Successfully|ERROR|Resolved|Prepared|Installed|error:)/.test(line.trim()))
          onProgress?.(redact(line.trim()).slice(0, 160))
      }
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    child.on('error', (error) => reject(new ExternalError(code, `Cannot run ${command}: ${error.message}.`)))
    child.on('close', (exitCode) => {
      if (exitCode === 0) resolve()
      else
        reject(
          new ExternalError(
            code,
            `${command} ${args.slice(0, 3).join(' ')} failed (exit ${exitCode}):\n${tail.join('\n')}`,
            {
              suggestions: ['Check that PyPI (or your pip index) is reachable and that the pinned versions exist.'],
            },
          ),
        )
    })
  })
}
