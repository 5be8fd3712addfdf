// Backups of a local-storage deployment on Connect, through the extension's ops endpoint: the content is
// found with the Connect API (so a wrong key or GUID fails the usual, typed way), then the snapshot is
// streamed down (POST /_mlflowctl/snapshot) or a prepared app-data tar streamed up (POST …/restore).
import {createReadStream, createWriteStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import * as tarStream from 'tar-stream'

import {unsafeEntryName} from '../../core/backup/format.js'
import {urlsFor} from '../../core/content-urls.js'
import {AuthError, ConfigError, ExternalError, UsageError} from '../../errors.js'
import type {ConnectClient} from './client.js'
import {open} from './http.js'
import {makeDirs} from '../fs/safe-fs.js'
import {walkArtifacts} from '../backup/artifact-source.js'
import {parseOpsStatus, parseRestoreResult, type OpsStatus} from '../../core/extension-contract.js'

export interface ConnectTransferOptions {
  server?: string
  apiKey?: string
  ca?: Buffer
  insecure?: boolean
  /** The Connect API client for server and apiKey (called only when both are set). */
  connect?: () => Pick<ConnectClient, 'getContent'>
  /** MLFLOWCTL_OPS_TOKEN, else the one `deploy` saved for this server and GUID. */
  opsToken(server: string, guid: string): Promise<string | undefined>
}

/** Idle time allowed: a restore migrates and swaps before it answers. */
/** The last entry of a transfer in either direction: {files, bytes} of every entry before it. */
const TRAILER = 'transfer.json'
const TIMEOUT_MS = 60 * 60_000

/** Where a deployment's ops endpoint is and the headers that pass its two checks (Connect's key, the ops token). */
export interface OpsEndpoint {
  contentUrl: string
  headers: Record<string, string>
  ca?: Buffer
  insecure?: boolean
}

/** The deployment's ops endpoint, found through the Connect API (a wrong key or GUID fails the usual, typed way). */
export async function opsEndpoint(options: ConnectTransferOptions, guid: string): Promise<OpsEndpoint> {
  return {...(await reach(options, guid)), ca: options.ca, insecure: options.insecure}
}

async function reach(
  options: ConnectTransferOptions,
  guid: string,
): Promise<{contentUrl: string; headers: Record<string, string>}> {
  if (!options.server || !options.apiKey || !options.connect)
    throw new ConfigError('CONNECT_NOT_CONFIGURED', `connect:${guid} needs a Connect server and an API key.`, {
      suggestions: ['Set CONNECT_SERVER and CONNECT_API_KEY (or --profile in the config file).'],
    })
  const content = await options.connect().getContent(guid)
  const opsToken = await options.opsToken(options.server, guid)
  if (!opsToken)
    throw new AuthError('OPS_TOKEN_MISSING', `No ops token for ${guid} on this machine.`, {
      suggestions: ['Set MLFLOWCTL_OPS_TOKEN, or deploy once from this machine (mlflowctl deploy saves it).'],
    })
  const contentUrl = urlsFor(options.server, guid, content).contentUrl
  // The key and the ops token go to the Connect server the user named, never to another origin it points at.
  if (new URL(contentUrl).origin !== new URL(options.server).origin) {
    throw new ConfigError(
      'CONTENT_URL_OTHER_ORIGIN',
      `Connect says ${guid} lives at ${new URL(contentUrl).origin}, not on ${new URL(options.server).origin}: refusing to send credentials there.`,
      {suggestions: ["Pass --server with the origin that serves content (Connect's Server.Address)."]},
    )
  }
  return {contentUrl, headers: {Authorization: `Key ${options.apiKey}`, 'X-Mlflowctl-Ops-Token': opsToken}}
}

/** A refusal from the extension, as a typed error with its own message. */
export async function refusal(status: number, body: AsyncIterable<unknown>, what: string): Promise<Error> {
  let text = ''
  for await (const chunk of body) if (text.length < 4096) text += String(chunk)
  let payload: {error?: string; message?: string} = {}
  try {
    payload = JSON.parse(text)
  } catch {
    // not the extension answering (a proxy page, an old bundle's 404)
  }
  const message = `${what}: ${payload.message ?? `HTTP ${status}`}`
  if (status === 401 || status === 403)
    return new AuthError(payload.error ?? 'OPS_TOKEN_INVALID', message, {
      suggestions: ['Check MLFLOWCTL_OPS_TOKEN (or redeploy with mlflowctl deploy, which sets it).'],
    })
  if (status === 404)
    return new ExternalError(
      'OPS_ENDPOINT_MISSING',
      `${what}: the deployed extension does not have this ops endpoint (HTTP 404).`,
      {suggestions: ['Redeploy with this mlflowctl version: mlflowctl deploy DIR.']},
    )
  if (status === 409 && payload.error === 'TARGET_NOT_EMPTY')
    return new UsageError('TARGET_NOT_EMPTY', message, {
      suggestions: ['Pass --force (a safety backup of the deployment is taken first).'],
    })
  // The extension's own restore lock: another upload is being swapped in right now.
  if (status === 409 && payload.error === 'RESTORE_RUNNING')
    return new ExternalError('TARGET_LOCKED', message, {
      suggestions: ['Let that restore finish, then run this again.'],
    })
  // Another gc or retention pass holds the store's lock.
  if (status === 409 && payload.error === 'GC_RUNNING')
    return new ExternalError('GC_RUNNING', message, {
      suggestions: ['Let it finish (mlflowctl doctor shows the last pass), then run this again.'],
    })
  if (status === 409 || status === 400) return new UsageError(payload.error ?? 'TRANSFER_REFUSED', message)
  return new ExternalError(payload.error ?? 'TRANSFER_FAILED', message)
}

/** Streams the deployment's snapshot into `dir` (db/mlflow.db, artifacts/…), refusing unsafe entries. A snapshot
 * `for: 'backup'` is what the extension reports as the last backup's; another (a scratch copy) is not. */
export async function fetchConnectSnapshot(
  options: ConnectTransferOptions,
  guid: string,
  dir: string,
  purpose: 'backup' | 'copy' = 'copy',
): Promise<{db: string; artifacts: string; location: string}> {
  const {contentUrl, headers} = await reach(options, guid)
  const response = await open({
    method: 'POST',
    url: new URL('_mlflowctl/snapshot', contentUrl),
    headers: {...headers, 'X-Mlflowctl-Snapshot-For': purpose},
    timeoutMs: TIMEOUT_MS,
    ca: options.ca,
    insecure: options.insecure,
  })
  if (response.status !== 200) throw await refusal(response.status, response.body, `Snapshot of ${guid}`)
  const extract = tarStream.extract()
  let received = {files: 0, bytes: 0}
  let trailer: {files?: number; bytes?: number} | undefined
  extract.on('entry', (header, stream, next) => {
    if (header.name === TRAILER && header.type === 'file' && !trailer) {
      let text = ''
      stream.on('data', (chunk: unknown) => (text += String(chunk)))
      stream.on('end', () => {
        trailer = JSON.parse(text)
        next()
      })
      return
    }
    const unsafe = trailer ? 'comes after the trailer' : unsafeEntryName(header.name)
    if (header.type !== 'file' || unsafe || header.name === 'manifest.json') {
      extract.destroy(
        new ExternalError(
          'SNAPSHOT_INVALID',
          `The snapshot from ${guid} holds an entry it must not: ${header.name} (${unsafe ?? header.type}).`,
        ),
      )
      return
    }
    received = {files: received.files + 1, bytes: received.bytes + (header.size ?? 0)}
    const path = join(dir, header.name)
    makeDirs(dirname(path))
      .then(() => pipeline(stream, createWriteStream(path, {mode: 0o600})))
      .then(
        () => next(),
        (error: Error) => extract.destroy(error),
      )
  })
  try {
    await pipeline(response.body, extract)
  } catch (error) {
    if (error instanceof ExternalError) throw error
    throw new ExternalError(
      'SNAPSHOT_FAILED',
      `The snapshot from ${guid} was cut short: ${(error as Error).message}.`,
      {suggestions: ['Run the backup again; check the content logs on Connect.']},
    )
  }
  // A stream cut at an entry boundary is still a valid tar: the trailer's counts tell.
  if (trailer?.files !== received.files || trailer?.bytes !== received.bytes) {
    throw new ExternalError(
      'SNAPSHOT_FAILED',
      `The snapshot from ${guid} is incomplete: ${received.files} files (${received.bytes} bytes) arrived, the trailer says ${trailer ? `${trailer.files} (${trailer.bytes})` : 'nothing (it never came)'}.`,
      {suggestions: ['Run the backup again; check the content logs on Connect.']},
    )
  }
  return {db: join(dir, 'db', 'mlflow.db'), artifacts: join(dir, 'artifacts'), location: contentUrl}
}

/** Packs `dir` (mlflow.db, artifacts/) into a tar beside it and streams it up to the restore endpoint. */
export async function uploadConnectRestore(
  options: ConnectTransferOptions,
  guid: string,
  dir: string,
  force: boolean,
  keepRevision = false,
): Promise<{revision: string; artifactFiles: number}> {
  const {contentUrl, headers: auth} = await reach(options, guid)
  const headers = {
    ...auth,
    'Content-Type': 'application/x-tar',
    ...(force ? {'X-Mlflowctl-Force': '1'} : {}),
    ...(keepRevision ? {'X-Mlflowctl-Keep-Revision': '1'} : {}),
  }
  // Written to a file first: the upload needs a Content-Length (WSGI servers do not read chunked bodies).
  const tarFile = `${dir}.tar`
  const pack = tarStream.pack()
  const written = pipeline(pack, createWriteStream(tarFile, {mode: 0o600}))
  const add = async (name: string, file: string) => {
    const {size} = await stat(file)
    await new Promise<void>((resolve, reject) => {
      const entry = pack.entry({name, size, mode: 0o600, mtime: new Date(0)}, (error) =>
        error ? reject(error) : resolve(),
      )
      createReadStream(file)
        .on('error', reject)
        .pipe(entry as unknown as NodeJS.WritableStream)
    })
  }
  const sent = {files: 0, bytes: 0}
  const counted = async (name: string, file: string) => {
    await add(name, file)
    sent.files++
    sent.bytes += (await stat(file)).size
  }
  await counted('db/mlflow.db', join(dir, 'mlflow.db'))
  const artifacts = join(dir, 'artifacts')
  if (
    await stat(artifacts).then(
      () => true,
      () => false,
    )
  )
    for await (const artifact of walkArtifacts(artifacts)) await counted(artifact.name, artifact.file)
  // The extension refuses an upload whose trailer is missing or disagrees: a cut-off upload never lands.
  pack.entry({name: TRAILER, mode: 0o600, mtime: new Date(0)}, JSON.stringify(sent))
  pack.finalize()
  await written
  const response = await open({
    method: 'POST',
    url: new URL('_mlflowctl/restore', contentUrl),
    headers,
    timeoutMs: TIMEOUT_MS,
    ca: options.ca,
    insecure: options.insecure,
    bodyFile: {path: tarFile, size: (await stat(tarFile)).size},
  })
  if (response.status !== 200) throw await refusal(response.status, response.body, `Restore into ${guid}`)
  let text = ''
  for await (const chunk of response.body) text += String(chunk)
  return parseRestoreResult(text, `The restore answer of ${guid}`)
}

/** The extension's ops status (GET /_mlflowctl/status). */
export async function connectOpsStatus(options: ConnectTransferOptions, guid: string): Promise<OpsStatus> {
  const {contentUrl, headers} = await reach(options, guid)
  const response = await open({
    method: 'GET',
    url: new URL('_mlflowctl/status', contentUrl),
    headers,
    timeoutMs: 30_000,
    ca: options.ca,
    insecure: options.insecure,
  })
  if (response.status !== 200) throw await refusal(response.status, response.body, `Status of ${guid}`)
  let text = ''
  for await (const chunk of response.body) text += String(chunk)
  return parseOpsStatus(text, `The ops status of ${guid}`)
}

/** Whether the deployment holds MLflow data (its ops status's hasData). */
export async function connectHasData(options: ConnectTransferOptions, guid: string): Promise<boolean> {
  const status = await connectOpsStatus(options, guid)
  if (status.storageMode !== 'local')
    throw new UsageError(
      'NOT_LOCAL_STORAGE',
      `${guid} keeps its data in ${status.storageMode} storage: restore into its database and artifact store directly (--to postgresql://… --artifacts-to …).`,
    )
  return Boolean(status.hasData)
}

/** For callers without Connect settings: any connect: location then fails with CONNECT_NOT_CONFIGURED. */
export const NO_CONNECT: ConnectTransferOptions = {opsToken: async () => undefined}
