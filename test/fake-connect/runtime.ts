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
  /** The server's default init_timeout (Scheduler.InitTimeout, 60 s on Connect), in seconds; an item's
   * `init_timeout` overrides it. */
  initTimeoutSeconds?: number
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

/** A bundle whose Python environment is built: what Connect's deploy task leaves behind. */
export interface PreparedApp {
  bundleId: string
  dir: string
  appmode: string
  python: string
}

/** Builds (or reuses) the bundle's venv from its requirements.txt, as Connect's deploy task does. */
export async function prepareApp(
  options: RuntimeOptions,
  bundleId: string,
  dir: string,
  appmode: string,
  log: (line: string) => void,
): Promise<PreparedApp> {
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
  return {bundleId, dir, appmode, python: venv.python}
}

/**
 * Starts a prepared app's process with the variables Connect sets. Resolves once it answers HTTP at all (any
 * status: Connect asks only that the process serves); kills it and rejects when it does not within
 * `initTimeoutMs` (the item's init_timeout), or when it exits first.
 */
export async function launchApp(
  app: PreparedApp,
  env: Record<string, string>,
  initTimeoutMs: number,
  log: (line: string) => void,
): Promise<RunningApp> {
  const port = await freePort()
  const child = spawn(app.python, appCommand(app.appmode, port), {
    cwd: app.dir,
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
  const deadline = Date.now() + initTimeoutMs
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
      await fetch(`http://127.0.0.1:${port}/`, {signal: AbortSignal.timeout(2000)})
      return {bundleId: app.bundleId, port, process: child, stop}
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  // Connect kills a process that has not started serving within init_timeout.
  try {
    process.kill(-child.pid!, 'SIGKILL')
  } catch {
    // gone already
  }
  await exited
  throw new DeployFailure(
    'application-start-timeout',
    `the application did not answer HTTP within its init_timeout (${Math.round(initTimeoutMs / 1000)} s) and was killed`,
  )
}

/** prepareApp, then launchApp. */
export async function startApp(
  options: RuntimeOptions,
  bundleId: string,
  dir: string,
  appmode: string,
  env: Record<string, string>,
  log: (line: string) => void,
  initTimeoutMs: number,
): Promise<RunningApp> {
  return launchApp(await prepareApp(options, bundleId, dir, appmode, log), env, initTimeoutMs, log)
}
