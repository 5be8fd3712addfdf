// The part of the fake Connect that really runs bundles: unpack, check the manifest, build or reuse a
// venv from requirements.txt, start the entrypoint with the variables Connect sets, wait for it.
import {spawn, type ChildProcess} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'

import * as tar from 'tar'

import {appCommand} from '../../src/adapters/dev/app-command.js'
import {ensureVenv} from '../../src/adapters/python/venv.js'

export interface RuntimeOptions {
  cacheDir: string
  python: string
  pythonVersion: string
  /** How long a process may take to answer /health before the deploy fails. */
  startTimeoutMs: number
}

export interface RunningApp {
  bundleId: string
  port: number
  process: ChildProcess
  stop(): Promise<void>
}

export class DeployFailure extends Error {
  constructor(
    readonly errorCode: string,
    message: string,
  ) {
    super(message)
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number}
      server.close(() => resolve(port))
    })
  })
}

/** Unpacks a bundle and checks manifest.json's hex MD5s; returns the parsed manifest. */
export async function unpackBundle(archive: string, dir: string): Promise<{appmode: string; entrypoint: string}> {
  rmSync(dir, {recursive: true, force: true})
  mkdirSync(dir, {recursive: true})
  try {
    await tar.extract({file: archive, cwd: dir, strict: true})
  } catch (error) {
    throw new DeployFailure('bundle-invalid', `cannot unpack the bundle: ${(error as Error).message}`)
  }
  let manifest: {metadata?: {appmode?: string; entrypoint?: string}; files?: Record<string, {checksum: string}>}
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))
  } catch {
    throw new DeployFailure('bundle-manifest-missing', 'the bundle has no readable manifest.json')
  }
  for (const [path, {checksum}] of Object.entries(manifest.files ?? {})) {
    let actual = ''
    try {
      actual = createHash('md5')
        .update(readFileSync(join(dir, path)))
        .digest('hex')
    } catch {
      throw new DeployFailure('bundle-manifest-invalid', `manifest.json lists ${path}, which the bundle lacks`)
    }
    if (actual !== checksum) throw new DeployFailure('bundle-manifest-invalid', `checksum mismatch for ${path}`)
  }
  if (!manifest.metadata?.appmode || !manifest.metadata.entrypoint)
    throw new DeployFailure('bundle-manifest-invalid', 'manifest.json has no metadata.appmode/entrypoint')
  return {appmode: manifest.metadata.appmode, entrypoint: manifest.metadata.entrypoint}
}

/** Builds the environment and starts the app; resolves once /health answers, rejects if it exits first. */
export async function startApp(
  options: RuntimeOptions,
  bundleId: string,
  dir: string,
  appmode: string,
  env: Record<string, string>,
  log: (line: string) => void,
): Promise<RunningApp> {
  const requirements = readFileSync(join(dir, 'requirements.txt'), 'utf8')
  log('Building Python environment...')
  let venv
  try {
    venv = await ensureVenv({
      cacheDir: options.cacheDir,
      python: options.python,
      pythonVersion: options.pythonVersion,
      requirements,
      onProgress: log,
    })
  } catch (error) {
    throw new DeployFailure('python-package-install-failed', (error as Error).message)
  }
  log(`Using environment ${venv.key}${venv.reused ? ' (cached)' : ''}`)
  const port = await freePort()
  const child = spawn(venv.python, appCommand(appmode, port), {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = ''
    stream.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n')
      partial = lines.pop() ?? ''
      lines.filter(Boolean).forEach(log)
    })
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const deadline = Date.now() + options.startTimeoutMs
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    try {
      process.kill(-child.pid!, 'SIGTERM')
    } catch {
      return
    }
    const timer = setTimeout(() => child.exitCode === null && process.kill(-child.pid!, 'SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new DeployFailure(
        'application-start-failed',
        `the application exited with ${child.exitCode ?? child.signalCode} before it answered`,
      )
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`, {signal: AbortSignal.timeout(2000)})).ok)
        return {bundleId, port, process: child, stop}
    } catch {
      // still starting
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  await stop()
  throw new DeployFailure(
    'application-start-timeout',
    `the application did not answer /health within ${options.startTimeoutMs} ms`,
  )
}
