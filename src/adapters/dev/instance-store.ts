import {createHash, randomBytes, randomUUID} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdir, readFile} from 'node:fs/promises'
import {basename, join} from 'node:path'

import {readJson, writePrivateJson} from '../fs/json-file.js'

export {readJson, writePrivateJson}

/** Who the dev instance is; created once and kept so that URLs and keys survive down/up. */
export interface DevIdentity {
  guid: string
  apiKey: string
  opsToken: string
  port?: number
}

/** What the supervisor reports about the running instance. */
export interface DevState {
  supervisorPid: number
  appPid?: number
  proxyPort?: number
  appPort?: number
  phase: 'starting' | 'ready' | 'failed' | 'stopped'
  exitCode?: number | null
  mlflowVersion: string
  appMode: string
  storage: string
  bundleDir: string
  envNames: string[]
  startedAt: string
  message?: string
}

/** Everything the supervisor needs to start; written 0600 and deleted by the supervisor once read. */
export interface LaunchSpec {
  bundleDir: string
  runDir: string
  dataDir: string
  python: string
  appMode: string
  identity: DevIdentity
  env: Record<string, string>
  state: Omit<DevState, 'supervisorPid' | 'phase' | 'startedAt'>
}

export interface InstancePaths {
  root: string
  identity: string
  state: string
  launch: string
  log: string
  data: string
  run: string
}

/** One directory per bundle directory: <dataDir>/dev/<name>-<hash of the absolute path>. */
export function instancePaths(dataDir: string, bundleDir: string): InstancePaths {
  const hash = createHash('sha256').update(bundleDir).digest('hex').slice(0, 8)
  const root = join(dataDir, 'dev', `${basename(bundleDir).replace(/[^A-Za-z0-9_.-]/g, '_')}-${hash}`)
  return {
    root,
    identity: join(root, 'identity.json'),
    state: join(root, 'state.json'),
    launch: join(root, 'launch.json'),
    log: join(root, 'app.log'),
    data: join(root, 'data'),
    run: join(root, 'bundle'),
  }
}

/** Loads the instance identity, creating it (random GUID, API key and ops token) the first time. */
export async function loadOrCreateIdentity(paths: InstancePaths): Promise<DevIdentity> {
  await mkdir(paths.root, {recursive: true, mode: 0o700})
  const existing = await readJson<DevIdentity>(paths.identity)
  if (existing?.guid && existing.apiKey && existing.opsToken) return existing
  const identity: DevIdentity = {
    guid: randomUUID(),
    apiKey: randomBytes(24).toString('hex'),
    opsToken: randomBytes(24).toString('hex'),
  }
  await writePrivateJson(paths.identity, identity)
  return identity
}

export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The last `lines` lines of the instance log ('' when there is none). */
export async function logTail(paths: InstancePaths, lines: number): Promise<string> {
  if (!existsSync(paths.log)) return ''
  const text = await readFile(paths.log, 'utf8')
  return text
    .split('\n')
    .slice(-lines - 1)
    .join('\n')
    .trimEnd()
}
