/**
 * The long-lived process behind `mlflowctl dev up`: it starts the extension the way Connect would (a
 * fresh copy of the bundle, the variables Connect sets, one process), fronts it with the auth proxy,
 * and records its state. `dev down` stops it with SIGTERM. Run as: node supervisor.js <instance-root>.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {rm} from 'node:fs/promises'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {secretValuesOf} from '../../core/env-vars.js'
import {describeStartup, startupFromHealth} from '../../core/extension-contract.js'
import {appCommand} from './app-command.js'
import {asJsonLogLine, logEvent} from './log-lines.js'
import {createAuthProxy} from './auth-proxy.js'
import {readJson, writePrivateJson, type DevState, type LaunchSpec} from './instance-store.js'

const HEALTH_POLL_MS = 250
const STOP_GRACE_MS = 10_000
const PASSTHROUGH_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR', 'TZ', 'SSL_CERT_FILE']

function freePort(preferred = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe: Server = createServer()
    probe.once('error', (error) => (preferred === 0 ? reject(error) : resolve(freePort(0))))
    probe.listen(preferred, '127.0.0.1', () => {
      const {port} = probe.address() as {port: number}
      probe.close(() => resolve(port))
    })
  })
}

async function main(root: string): Promise<void> {
  const launchPath = join(root, 'launch.json')
  const statePath = join(root, 'state.json')
  const spec = await readJson<LaunchSpec>(launchPath)
  await rm(launchPath, {force: true}) // it holds env values; do not leave it on disk
  if (!spec) throw new Error(`no launch spec at ${launchPath}`)
  let state: DevState = {
    ...spec.state,
    supervisorPid: process.pid,
    phase: 'starting',
    startedAt: new Date().toISOString(),
  }
  const save = (patch: Partial<DevState>) => {
    state = {...state, ...patch}
    return writePrivateJson(statePath, state)
  }
  const appPort = await freePort()
  const proxyPort = await freePort(spec.identity.port ?? 0)
  const proxy = createAuthProxy({guid: spec.identity.guid, apiKey: spec.identity.apiKey, upstreamPort: appPort})
  await new Promise<void>((resolve) => proxy.listen(proxyPort, '127.0.0.1', resolve))
  const publicUrl = `http://127.0.0.1:${proxyPort}/`
  const env: Record<string, string> = {}
  for (const name of PASSTHROUGH_ENV) if (process.env[name]) env[name] = process.env[name]!
  Object.assign(env, spec.env, {
    CONNECT_SERVER: publicUrl,
    CONNECT_CONTENT_GUID: spec.identity.guid,
    CONNECT_CONTENT_DATA_DIR: spec.dataDir,
    RSTUDIO_PRODUCT: 'CONNECT',
    POSIT_PRODUCT: 'CONNECT',
    MLFLOWCTL_OPS_TOKEN: spec.identity.opsToken,
    PYTHONUNBUFFERED: '1',
  })
  const app: ChildProcess = spawn(spec.python, appCommand(spec.appMode, appPort), {
    cwd: spec.runDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // Our stdout is the log file: every line of the server goes there as JSON (log-lines.ts), masked.
  const secrets = [
    spec.identity.apiKey,
    spec.identity.opsToken,
    ...secretValuesOf(Object.entries(spec.env).map(([name, value]) => ({name, value}))),
  ]
  for (const source of ['stdout', 'stderr'] as const) {
    createInterface({input: app[source]!, crlfDelay: Infinity}).on('line', (line) => {
      if (line.trim()) process.stdout.write(`${asJsonLogLine(line, source, new Date(), secrets)}\n`)
    })
  }
  await save({appPid: app.pid, appPort, proxyPort})
  let stopping = false
  const stop = async (phase: DevState['phase'], exitCode?: number | null, message?: string) => {
    if (stopping) return
    stopping = true
    proxy.close()
    if (app.exitCode === null && app.signalCode === null) {
      app.kill('SIGTERM')
      const timer = setTimeout(() => app.kill('SIGKILL'), STOP_GRACE_MS)
      await new Promise((resolve) => app.once('exit', resolve))
      clearTimeout(timer)
    }
    await save({phase, exitCode: exitCode ?? app.exitCode, message})
    process.exit(0)
  }
  app.once('exit', (code, signal) => {
    const phase = state.phase === 'starting' ? 'failed' : 'stopped'
    void stop(phase, code, `the MLflow process exited (${signal ?? `code ${code}`})`)
  })
  process.once('SIGTERM', () => void stop('stopped'))
  process.once('SIGINT', () => void stop('stopped'))
  while (!stopping && state.phase === 'starting') {
    try {
      const response = await fetch(`http://127.0.0.1:${appPort}/health`, {signal: AbortSignal.timeout(2000)})
      // The extension answers at once and says what its start-up is doing (startup.py): a refusal ends the start,
      // a migration is progress to show.
      const startup = response.status === 503 ? startupFromHealth(await response.text()) : undefined
      if (response.ok) await save({phase: 'ready'})
      else if (startup?.state === 'refused') void stop('failed', null, `the extension ${describeStartup(startup)}`)
      else if (startup && state.message !== describeStartup(startup)) await save({message: describeStartup(startup)})
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS))
  }
}

main(process.argv[2]).catch((error) => {
  process.stderr.write(
    `${logEvent('error', 'dev.supervisor_failed', `mlflowctl dev supervisor failed: ${(error as Error).message}`)}\n`,
  )
  process.exit(1)
})
