import {randomBytes} from 'node:crypto'
import {mkdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {DeployDeps, DeploymentRecord} from '../core/deploy.js'
import {buildBundleArchive, type BundleArchiveDeps} from '../core/bundle-archive.js'
import type {ConnectClient} from '../adapters/connect/client.js'
import {connectClient, saveOpsToken, savedOpsToken} from './connect.js'
import {send} from '../adapters/connect/http.js'
import {md5OfFile, readRenderedBundle, readText} from '../adapters/fs/bundle-dir.js'
import {writeTarGz} from '../adapters/fs/tar-gz.js'
import {historyFile} from '../adapters/history-file.js'
import {readJson, writePrivateJson} from '../adapters/fs/json-file.js'

export interface DeployDepsOptions {
  server: string
  apiKey: string
  ca?: Buffer
  insecure?: boolean
  configDir: string
  dataDir: string
}

const recordPath = (dir: string) => join(dir, '.mlflowctl', 'deployments.json')

/** How a rendered bundle becomes the archive Connect takes: its manifest read, its files hashed and packed. */
export function bundleArchiveDeps(): BundleArchiveDeps {
  return {readText: (path) => readText(path, 'the bundle manifest'), md5Of: md5OfFile, writeArchive: writeTarGz}
}

/** Real DeployDeps: the Connect client, deployment records next to the bundle (as rsconnect-python keeps
 * them), and ops tokens in the config dir with 0600 permissions. */
export function createDeployDeps(options: DeployDepsOptions): DeployDeps & {connect: ConnectClient} {
  const connect = connectClient({
    server: options.server,
    apiKey: options.apiKey,
    ca: options.ca,
    insecure: options.insecure,
  })
  return {
    connect,
    probe: {
      async get(url, headers, timeoutMs) {
        const response = await send({
          method: 'GET',
          url: new URL(url),
          headers,
          timeoutMs: timeoutMs ?? 75_000, // core passes the item's init_timeout plus a margin
          ca: options.ca,
          insecure: options.insecure,
        })
        return {status: response.status, body: response.body.toString('utf8')}
      },
      now: () => Date.now(),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    },
    async readBundle(dir) {
      const {manifest, info} = await readRenderedBundle(dir)
      return {
        info,
        manifest,
        files: Object.keys(manifest.files).sort(),
        async archive() {
          const work = join(tmpdir(), `mlflowctl-bundle-${process.pid}-${randomBytes(4).toString('hex')}`)
          await mkdir(work, {recursive: true})
          try {
            const result = await buildBundleArchive(bundleArchiveDeps(), {dir, output: join(work, 'bundle.tar.gz')})
            return await readFile(result.file)
          } finally {
            await rm(work, {recursive: true, force: true})
          }
        },
      }
    },
    async readRecord(dir, server) {
      return (await readJson<Record<string, DeploymentRecord>>(recordPath(dir)))?.[server]
    },
    async writeRecord(dir, record) {
      const all = (await readJson<Record<string, DeploymentRecord>>(recordPath(dir))) ?? {}
      all[record.server] = record
      await mkdir(join(dir, '.mlflowctl'), {recursive: true})
      await writePrivateJson(recordPath(dir), all)
    },
    opsToken: (server, guid) => savedOpsToken(options.configDir, server, guid),
    saveOpsToken: (server, guid, token) => saveOpsToken(options.configDir, server, guid, token),
    newToken: () => randomBytes(32).toString('hex'),
    appendHistory: (event) => historyFile(options.dataDir).append(event),
    now: () => Date.now(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  }
}
