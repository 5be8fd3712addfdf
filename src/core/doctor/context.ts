/**
 * What every doctor check shares: its inputs, the probes (all I/O), the facts earlier checks leave for later ones,
 * and the outcome helpers. The checks themselves are in one file per layer (checks-*.ts).
 */

import type {StorageMode} from '../bundle.js'
import type {ArtifactLocation} from '../artifact-url.js'
import type {DatabaseTarget} from '../database-url.js'
import type {HistoryEvent} from '../history.js'
import type {UpgradeIntent} from '../upgrade-intent.js'
import type {CheckOutcome} from './runner.js'
import type {OpsStatus} from '../extension-contract.js'

export const MIN_CONNECT_VERSION = '2025.10.0'
export const CERT_EXPIRY_WARN_DAYS = 14
export const MODE_TRIGGERS: Array<[StorageMode, string]> = [
  ['aws', 'RDS_ENDPOINT'],
  ['azure', 'AZURE_DATABASE_SERVER'],
  ['gcp', 'CLOUD_SQL_CONNECTION_NAME'],
  ['custom', 'MLFLOW_BACKEND_STORE_URI'],
]

export interface Sourced {
  value?: string
  source: string
}

export interface HttpAnswer {
  status: number
  body: string
}

export interface TlsInfo {
  authorized: boolean
  error?: string
  validTo: string
  issuer: string
  selfSigned: boolean
}

export interface ContentInfo {
  guid: string
  name: string
  appMode: string
  ownerGuid?: string
  locked: boolean
  minProcesses: number | null
  bundleId: string | null
  contentUrl: string
}

/** The ops status the extension serves (core/extension-contract.ts). */
export type {OpsStatus}

/** Connect answers: status codes are kept so that checks can tell 401, 403 and 404 apart. */
export type Answer<T> = {ok: true; value: T} | {ok: false; status: number; message: string}

export interface DoctorProbes {
  lookup(host: string): Promise<string[]>
  tcp(host: string, port: number): Promise<void>
  tls(host: string, port: number): Promise<TlsInfo>
  serverVersion(): Promise<Answer<string | undefined>>
  currentUser(): Promise<Answer<{guid: string; username: string; role: string}>>
  content(guid: string): Promise<Answer<ContentInfo>>
  environmentNames(guid: string): Promise<Answer<string[]>>
  associations(guid: string): Promise<Answer<string[]>>
  vanity(guid: string): Promise<Answer<string | undefined>>
  /** A request to content (through Connect's proxy), with the API key unless `headers` says otherwise. */
  request(url: string, init: {method?: string; headers?: Record<string, string>; body?: string}): Promise<HttpAnswer>
  history(): Promise<HistoryEvent[]>
  /** The intent record of an upgrade of the content that did not finish, kept on this machine. */
  unfinishedUpgrade(guid: string): Promise<UpgradeIntent | undefined>
  localMlflowVersion(): Promise<string | undefined>
  probeDatabase(target: DatabaseTarget): Promise<{user: string; serverVersion: string; alembicRevision: string | null}>
  /** The store at the location, rooted at its prefix (keys are relative to it). */
  objectStore(location: ArtifactLocation): Promise<{
    describe(): Promise<{exists: boolean; region?: string}>
    put(key: string, body: Buffer): Promise<void>
    get(key: string): Promise<Buffer>
    delete(key: string): Promise<void>
  }>
  now(): number
  newId(): string
}

/** A local instance started by `mlflowctl dev up`, diagnosed instead of a deployment (doctor --dev). */
export interface DevInstanceFacts {
  bundleDir: string
  /** starting, ready, failed, stopped, or "never started". */
  phase: string
  logFile: string
  /** Present when it runs. */
  running?: {guid: string; trackingUri: string; mlflowVersion: string; appMode: string; supervisorPid: number}
}

export interface DoctorInput {
  /** Set for doctor --dev: the Connect layer is replaced by this instance (checks-dev.ts). */
  dev?: DevInstanceFacts
  server: Sourced
  apiKey: Sourced
  guid: Sourced
  profile: string
  caCertificate?: string
  opsToken?: string
  deep: boolean
  maxBackupAgeMs?: number
  /** Warn when the extension's replica lags more (--max-replica-lag, default 60 s). */
  maxReplicaLagMs: number
  minFreeBytes: number
  minFreeRatio: number
  database?: DatabaseTarget
  artifacts?: ArtifactLocation
  /** The region the AWS SDK signs for here (AWS_REGION), compared with the bucket's. */
  awsRegion?: string
}

export interface DoctorContext {
  input: DoctorInput
  probes: DoctorProbes
  /** Filled by checks for later ones (content URL, ops status). */
  facts: {
    content?: ContentInfo
    ops?: OpsStatus
    user?: {guid: string; username: string; role: string}
    envNames?: string[]
  }
}

export const pass = (detail: string): CheckOutcome => ({status: 'pass', detail})
export const warn = (detail: string, fix: string): CheckOutcome => ({status: 'warn', detail, fix})
export const fail = (detail: string, fix: string): CheckOutcome => ({status: 'fail', detail, fix})
export const serverUrl = (ctx: DoctorContext) => new URL(ctx.input.server.value!.replace(/\/?$/, '/'))
/** Where the content's log is read: Connect's dashboard, or `mlflowctl dev logs` for a dev instance. */
export const logsLocation = (ctx: DoctorContext) =>
  ctx.input.dev
    ? `mlflowctl dev logs ${ctx.input.dev.bundleDir}`
    : `${serverUrl(ctx)}connect/#/apps/${ctx.input.guid.value}/logs`
export const keyHeader = (ctx: DoctorContext) => ({Authorization: `Key ${ctx.input.apiKey.value}`})

export function storageModeOf(ctx: DoctorContext): StorageMode | undefined {
  const fromOps = ctx.facts.ops?.storageMode as StorageMode | undefined
  if (fromOps) return fromOps
  const names = ctx.facts.envNames
  if (!names) return undefined
  return MODE_TRIGGERS.find(([, trigger]) => names.includes(trigger))?.[0] ?? 'local'
}

export function answerFailure(what: string, answer: {status: number; message: string}): CheckOutcome {
  if (answer.status === 401)
    return {
      ...fail(
        `Connect rejected the API key (HTTP 401) on ${what}`,
        'Create a new API key in Connect (your name > API Keys) and set CONNECT_API_KEY.',
      ),
      exit: 4,
    }
  if (answer.status === 403)
    return {
      ...fail(
        `not allowed to read ${what} (HTTP 403): the key's user is not the owner or a collaborator`,
        'Ask the content owner to add you as a collaborator (Access > Collaborators), or use their key.',
      ),
      exit: 4,
    }
  return fail(`${what}: ${answer.message}`, 'Retry; if it persists, check the Connect server logs.')
}

export function formatAge(ms: number): string {
  const hours = ms / 3_600_000
  return hours < 48 ? `${Math.round(hours)} h` : `${Math.round(hours / 24)} days`
}
