// The real DoctorProbes: DNS, TCP, TLS, the Connect API, requests to content, the history ledger, the
// local MLflow package and the database, each bounded by the caller's timeout.
import {execFile} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {lookup} from 'node:dns/promises'
import {connect as tcpConnect} from 'node:net'
import {connect as tlsConnect, type DetailedPeerCertificate} from 'node:tls'

import type {Answer, ContentInfo, DoctorProbes, TlsInfo} from '../core/doctor/checks.js'
import {MlflowctlError} from '../errors.js'
import {connectClient} from './connect.js'
import {send} from '../adapters/connect/http.js'
import {probePostgres} from '../adapters/db/postgres.js'
import {openStore} from '../adapters/store/index.js'
import {upgradeIntentFiles} from '../adapters/upgrade-intent-file.js'
import {historyFile} from '../adapters/history-file.js'

export interface DoctorProbeOptions {
  server: string
  apiKey: string
  ca?: Buffer
  insecure?: boolean
  timeoutMs: number
  dataDir: string
  /** The interpreter whose `mlflow` package is the local client (MLFLOWCTL_CLIENT_PYTHON, else python3). */
  clientPython: string
}

const STATUS_OF_CODE: Record<string, number> = {
  CONNECT_UNAUTHORIZED: 401,
  CONNECT_FORBIDDEN: 403,
  CONTENT_NOT_FOUND: 404,
}

async function answer<T>(call: () => Promise<T>): Promise<Answer<T>> {
  try {
    return {ok: true, value: await call()}
  } catch (error) {
    const code = error instanceof MlflowctlError ? error.code : ''
    return {ok: false, status: STATUS_OF_CODE[code] ?? 0, message: (error as Error).message}
  }
}

export function createDoctorProbes(options: DoctorProbeOptions): DoctorProbes {
  // One attempt per call: doctor reports what it sees now, and its own timeout bounds each check.
  const connect = connectClient({
    server: options.server,
    apiKey: options.apiKey,
    ca: options.ca,
    insecure: options.insecure,
    timeoutMs: options.timeoutMs,
    attempts: 1,
  })
  const history = historyFile(options.dataDir)
  return {
    async lookup(host) {
      return (await lookup(host, {all: true})).map((entry) => entry.address)
    },
    tcp: (host, port) =>
      new Promise((resolve, reject) => {
        const socket = tcpConnect({host, port, timeout: options.timeoutMs}, () => (socket.end(), resolve()))
        socket.on('timeout', () => socket.destroy(new Error(`no TCP answer within ${options.timeoutMs / 1000} s`)))
        socket.on('error', (error: NodeJS.ErrnoException) => reject(new Error(error.code ?? error.message)))
      }),
    tls: (host, port) =>
      new Promise<TlsInfo>((resolve, reject) => {
        // rejectUnauthorized false: the handshake completes either way, and authorized/authorizationError say why.
        const socket = tlsConnect(
          {
            host,
            port,
            servername: /^[\d.]+$|:/.test(host) ? undefined : host,
            ca: options.ca,
            rejectUnauthorized: false,
            timeout: options.timeoutMs,
          },
          () => {
            const cert = socket.getPeerCertificate(true) as DetailedPeerCertificate
            const issuer = [cert.issuer?.CN ?? cert.issuer?.O ?? 'unknown'].flat().join(', ')
            const info: TlsInfo = {
              authorized: socket.authorized,
              error: socket.authorizationError ? String(socket.authorizationError) : undefined,
              validTo: cert.valid_to ? new Date(cert.valid_to).toISOString() : '',
              issuer,
              selfSigned: cert.fingerprint256 === cert.issuerCertificate?.fingerprint256,
            }
            socket.end()
            resolve(info)
          },
        )
        socket.on('timeout', () => socket.destroy(new Error(`no TLS handshake within ${options.timeoutMs / 1000} s`)))
        socket.on('error', reject)
      }),
    serverVersion: () => answer(() => connect.serverVersion()),
    currentUser: () =>
      answer(async () => {
        const user = await connect.currentUser()
        return {guid: user.guid, username: user.username, role: user.user_role}
      }),
    content: (guid) =>
      answer(async (): Promise<ContentInfo> => {
        const item = await connect.getContent(guid)
        return {
          guid: item.guid,
          name: item.name ?? item.title ?? guid,
          appMode: item.app_mode ?? 'unknown',
          ownerGuid: item.owner_guid ?? undefined,
          locked: Boolean(item.locked),
          minProcesses: item.min_processes ?? null,
          bundleId: item.bundle_id ?? null,
          contentUrl: (item.content_url ?? new URL(`content/${guid}/`, connect.server).toString()).replace(/\/?$/, '/'),
        }
      }),
    environmentNames: (guid) => answer(() => connect.environmentNames(guid)),
    associations: (guid) => answer(() => connect.oauthIntegrations(guid)),
    vanity: (guid) => answer(() => connect.vanity(guid)),
    async request(url, init) {
      try {
        const response = await send({
          method: init.method ?? 'GET',
          url: new URL(url),
          headers: init.headers ?? {},
          body: init.body,
          timeoutMs: options.timeoutMs,
          ca: options.ca,
          insecure: options.insecure,
        })
        return {status: response.status, body: response.body.toString('utf8')}
      } catch (error) {
        return {status: 0, body: (error as Error).message}
      }
    },
    history: () => history.read(),
    unfinishedUpgrade: (guid) => upgradeIntentFiles(options.dataDir).read(guid),
    localMlflowVersion: () =>
      new Promise((resolve) => {
        // importlib.metadata reads the installed version without importing MLflow (which takes seconds).
        execFile(
          options.clientPython,
          ['-c', 'import importlib.metadata as m; print(m.version("mlflow"))'],
          {timeout: options.timeoutMs},
          (error, stdout) => resolve(error ? undefined : stdout.trim() || undefined),
        )
      }),
    probeDatabase: (target) => probePostgres(target),
    objectStore: (location) => openStore(location.display),
    now: () => Date.now(),
    newId: () => randomUUID(),
  }
}
