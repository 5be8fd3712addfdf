import {spawn} from 'node:child_process'
import {closeSync, openSync} from 'node:fs'
import {appendFile, copyFile, mkdir, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {DevDeps} from '../core/dev.js'
import {md5OfFile, readRenderedBundle, readText} from '../adapters/fs/bundle-dir.js'
import {detectPythonVersion, pythonCommand} from '../adapters/python/python.js'
import {ensureVenv} from '../adapters/python/venv.js'
import {
  instancePaths,
  isAlive,
  loadOrCreateIdentity,
  logTail,
  readJson,
  writePrivateJson,
  type DevState,
  type InstancePaths,
  type LaunchSpec,
} from '../adapters/dev/instance-store.js'
import {logEvent} from '../adapters/dev/log-lines.js'

const SUPERVISOR = fileURLToPath(
  new URL(`../adapters/dev/supervisor${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
)
const STOP_WAIT_MS = 20_000

export interface DevDepsOptions {
  cacheDir: string
  dataDir: string
  env: Record<string, string | undefined>
}

/** The real DevDeps: files under dataDir/dev, venvs under cacheDir/venvs, a detached node supervisor. */
export function createDevDeps(options: DevDepsOptions): DevDeps {
  const python = pythonCommand(options.env)
  return {
    async readBundle(dir) {
      const {manifest, info} = await readRenderedBundle(dir)
      const requirements = await readText(join(dir, 'requirements.txt'), 'requirements.txt')
      const md5 = Object.fromEntries(
        await Promise.all(
          Object.keys(manifest.files).map(async (path) => [path, await md5OfFile(join(dir, path))] as const),
        ),
      )
      return {manifest, info, requirements, md5}
    },
    pythonVersion: () => detectPythonVersion(python),
    ensureVenv: (requirements, pythonVersion, report) =>
      ensureVenv({cacheDir: options.cacheDir, python, pythonVersion, requirements, onProgress: report}),
    paths: (bundleDir) => instancePaths(options.dataDir, bundleDir),
    async identity(paths, port) {
      const identity = await loadOrCreateIdentity(paths as InstancePaths)
      if (port !== undefined && identity.port !== port) {
        identity.port = port
        await writePrivateJson((paths as InstancePaths).identity, identity)
      }
      return identity
    },
    state: (paths) => readJson<DevState>((paths as InstancePaths).state),
    isAlive,
    async copyBundle(bundleDir, files, runDir) {
      await rm(runDir, {recursive: true, force: true})
      for (const file of files) {
        const target = join(runDir, file)
        await mkdir(dirname(target), {recursive: true})
        await copyFile(join(bundleDir, file), target)
      }
    },
    async launch(paths, spec) {
      const instance = paths as InstancePaths
      await mkdir(instance.data, {recursive: true, mode: 0o700})
      const launch: LaunchSpec = {
        bundleDir: spec.state.bundleDir,
        runDir: instance.run,
        dataDir: instance.data,
        python: spec.python,
        appMode: spec.appMode,
        identity: spec.identity,
        env: spec.env,
        state: spec.state,
      }
      await rm(instance.state, {force: true})
      await writePrivateJson(instance.launch, launch)
      await appendFile(instance.log, `${logEvent('info', 'dev.up', 'mlflowctl dev up: starting the extension')}\n`, {
        mode: 0o600,
      })
      const log = openSync(instance.log, 'a')
      const execArgv = SUPERVISOR.endsWith('.ts') ? process.execArgv : []
      const child = spawn(process.execPath, [...execArgv, SUPERVISOR, instance.root], {
        detached: true,
        stdio: ['ignore', log, log],
      })
      closeSync(log)
      child.unref()
      return child.pid!
    },
    async stop(pid) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        return
      }
      const deadline = Date.now() + STOP_WAIT_MS
      while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
      // The supervisor leads its process group (detached), so this also takes MLflow down with it.
      if (isAlive(pid)) process.kill(-pid, 'SIGKILL')
    },
    logTail: (paths, lines) => logTail(paths as InstancePaths, lines),
    async getJson(url, headers) {
      const response = await fetch(url, {headers, signal: AbortSignal.timeout(10_000)})
      const text = await response.text()
      let body: unknown = text
      try {
        body = JSON.parse(text)
      } catch {
        // plain text (e.g. /health answers "OK")
      }
      return {status: response.status, body}
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now: () => Date.now(),
  }
}
