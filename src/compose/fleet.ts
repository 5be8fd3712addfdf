// What `fleet` commands run on: Connect's content list, each deployment's bundle info and ops status, the local
// ledger, and the single-deployment commands, each run as its own mlflowctl process (one deployment's failure, or
// crash, never touches another's; each prints its --json envelope).
import {spawn, type ChildProcess} from 'node:child_process'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {extract} from 'tar-stream'

import type {FleetBundleInfo, FleetDiscoveryPorts, FleetOutcome, FleetStatus} from '../core/fleet.js'
import {redact} from '../core/redact.js'
import type {ConnectClient} from '../adapters/connect/client.js'
import {connectOpsStatus, type ConnectTransferOptions} from '../adapters/connect/ops-client.js'
import {PACKAGE_ROOT} from '../adapters/fs/bundle-dir.js'
import {savedOpsToken} from './connect.js'

export interface FleetDeps extends FleetDiscoveryPorts {
  status(guid: string): Promise<FleetStatus>
  /** Runs `mlflowctl ARGS --json` for one deployment; never throws. */
  run(guid: string, name: string, args: string[]): Promise<FleetOutcome>
  /** Stops the commands still running (the fleet command was cancelled or killed). */
  stop(): void
  /** The ops token deploy saved on this machine for the deployment (never MLFLOWCTL_OPS_TOKEN, which is one
   * deployment's and must not be sent to the others). */
  opsToken(guid: string): Promise<string | undefined>
}

export function createFleetDeps(options: {
  connect: ConnectClient
  transfer: ConnectTransferOptions
  /** The environment every child command gets: the server and key go there, never on a command line. */
  env: NodeJS.ProcessEnv
  secrets: string[]
  configDir: string
}): FleetDeps {
  const running = new Set<ChildProcess>()
  const server = options.connect.server.href
  const savedToken = (guid: string) => savedOpsToken(options.configDir, options.transfer.server ?? server, guid)
  const transfer: ConnectTransferOptions = {...options.transfer, opsToken: (_server, guid) => savedToken(guid)}
  return {
    listContent: () => options.connect.listContent(),
    async bundleInfo(guid, bundleId) {
      return readBundleInfo(await options.connect.downloadBundle(guid, bundleId))
    },
    status: (guid) => connectOpsStatus(transfer, guid) as Promise<FleetStatus>,
    opsToken: savedToken,
    run: (guid, name, args) => runChild(guid, name, args, options.env, options.secrets, running),
    stop() {
      // SIGTERM: each child's own handlers release its locks and remove its partial files.
      for (const child of running) child.kill('SIGTERM')
    },
  }
}

/** mlflowctl.json from a bundle's tar.gz; undefined when the bundle has none (not an mlflowctl deployment). */
export async function readBundleInfo(archive: Buffer): Promise<FleetBundleInfo | undefined> {
  const unpack = extract()
  let found: FleetBundleInfo | undefined
  const done = new Promise<void>((resolve, reject) => {
    unpack.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = []
      const wanted = header.name.replace(/^\.\//, '') === 'mlflowctl.json' && header.size! < 1 << 20
      stream.on('data', (chunk: unknown) => {
        if (wanted) chunks.push(chunk as Buffer)
      })
      stream.on('end', () => {
        try {
          if (wanted) found = JSON.parse(Buffer.concat(chunks).toString('utf8')) as FleetBundleInfo
        } catch (error) {
          return reject(new Error(`mlflowctl.json is not JSON (${(error as Error).message})`))
        }
        next()
      })
      stream.resume()
    })
    unpack.on('finish', resolve)
    unpack.on('error', reject)
  })
  // A bundle is the extension's code (kilobytes); one that unpacks past 64 MiB is refused, not read.
  unpack.end(gunzipSync(archive, {maxOutputLength: 64 << 20}))
  await done
  return found
}

async function runChild(
  guid: string,
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  secrets: string[],
  running: Set<ChildProcess>,
): Promise<FleetOutcome> {
  const started = Date.now()
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'bin', 'run.js'), ...args, '--json'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  child.on('close', () => running.delete(child))
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)))
  const exitCode = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(1))
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)))
  })
  const seconds = (Date.now() - started) / 1000
  let envelope:
    {status?: number; result?: unknown; error?: {code: string; message: string; suggestions?: string[]}} | undefined
  try {
    envelope = JSON.parse(stdout) as typeof envelope
  } catch {
    envelope = undefined
  }
  const error =
    exitCode === 0
      ? undefined
      : (envelope?.error ?? {
          code: 'FLEET_MEMBER_CRASHED',
          message: redact(stderr.trim().split('\n').at(-1) || `mlflowctl exited with ${exitCode}`, secrets),
        })
  return {guid, name, exitCode, error, result: envelope?.result, seconds}
}
