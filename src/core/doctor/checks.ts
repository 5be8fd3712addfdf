/**
 * The checks `mlflowctl doctor` runs, layer by layer: config, Connect, MLflow, the extension, the database,
 * the local client. Each returns {status, detail, fix}; all I/O goes through DoctorProbes.
 */
import semver from 'semver'

import {connectVersionAtLeast, parseConnectVersion} from '../connect-version.js'

import {formatBytes} from '../units.js'
import {OAUTH_STORAGE_MODES, REQUIRED_ENV, type StorageMode} from '../bundle.js'
import {joinKey, type ArtifactLocation} from '../artifact-url.js'
import type {DatabaseTarget} from '../database-url.js'
import type {HistoryEvent} from '../history.js'
import type {CheckDefinition, CheckOutcome, Results} from './runner.js'
import {parseOpsStatus, type OpsStatus} from '../extension-contract.js'
import type {MlflowctlError} from '../../errors.js'

export const MIN_CONNECT_VERSION = '2025.10.0'
const CERT_EXPIRY_WARN_DAYS = 14
const MODE_TRIGGERS: Array<[StorageMode, string]> = [
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
  localMlflowVersion(): Promise<string | undefined>
  probeDatabase(target: DatabaseTarget): Promise<{user: string; serverVersion: string; alembicRevision: string | null}>
  objectStore(location: ArtifactLocation): Promise<{
    describe(): Promise<{exists: boolean; region?: string}>
    put(key: string, body: Buffer): Promise<void>
    get(key: string): Promise<Buffer>
    delete(key: string): Promise<void>
  }>
  now(): number
  newId(): string
}

export interface DoctorInput {
  server: Sourced
  apiKey: Sourced
  guid: Sourced
  profile: string
  caCertificate?: string
  opsToken?: string
  deep: boolean
  maxBackupAgeMs?: number
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

const pass = (detail: string): CheckOutcome => ({status: 'pass', detail})
const warn = (detail: string, fix: string): CheckOutcome => ({status: 'warn', detail, fix})
const fail = (detail: string, fix: string): CheckOutcome => ({status: 'fail', detail, fix})
const serverUrl = (ctx: DoctorContext) => new URL(ctx.input.server.value!.replace(/\/?$/, '/'))
const keyHeader = (ctx: DoctorContext) => ({Authorization: `Key ${ctx.input.apiKey.value}`})

function storageModeOf(ctx: DoctorContext): StorageMode | undefined {
  const fromOps = ctx.facts.ops?.storageMode as StorageMode | undefined
  if (fromOps) return fromOps
  const names = ctx.facts.envNames
  if (!names) return undefined
  return MODE_TRIGGERS.find(([, trigger]) => names.includes(trigger))?.[0] ?? 'local'
}

function answerFailure(what: string, answer: {status: number; message: string}): CheckOutcome {
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

export const DOCTOR_CHECKS: CheckDefinition<DoctorContext>[] = [
  // ---- 1. config ----
  {
    id: 'config.server',
    category: 'config',
    title: 'Connect server',
    async run(ctx) {
      const {value, source} = ctx.input.server
      if (!value)
        return fail(
          'no Connect server given',
          'Pass --server https://connect.example.com, set CONNECT_SERVER, or add it to a profile.',
        )
      try {
        const url = new URL(value)
        if (!['http:', 'https:'].includes(url.protocol)) throw new Error('scheme')
      } catch {
        return fail(
          `"${value}" is not an http(s) URL (from ${source})`,
          'Use the URL you open Connect with, e.g. https://connect.example.com.',
        )
      }
      return pass(`${value} (from ${source}, profile ${ctx.input.profile})`)
    },
  },
  {
    id: 'config.api-key',
    category: 'config',
    title: 'API key',
    async run(ctx) {
      const {value, source} = ctx.input.apiKey
      if (!value)
        return fail(
          'no API key given',
          'Set CONNECT_API_KEY (preferred over --api-key, which other users can see in the process list).',
        )
      return pass(`set (from ${source}, value masked)`)
    },
  },
  {
    id: 'config.guid',
    category: 'config',
    title: 'Content GUID',
    async run(ctx) {
      const {value, source} = ctx.input.guid
      if (!value)
        return fail(
          'no content GUID given, and no deployment record found',
          'Pass --guid GUID, or run doctor from (or with) the bundle directory you deployed.',
        )
      return pass(`${value} (from ${source})`)
    },
  },
  // ---- 2. Connect ----
  {
    id: 'connect.dns',
    category: 'connect',
    title: 'DNS',
    needs: ['config.server'],
    async run(ctx) {
      const host = serverUrl(ctx).hostname.replace(/^\[|\]$/g, '')
      try {
        const addresses = await ctx.probes.lookup(host)
        return pass(`${host} → ${addresses.join(', ')}`)
      } catch (error) {
        return fail(`${host} does not resolve: ${(error as Error).message}`, 'Check the server name, your DNS or VPN.')
      }
    },
  },
  {
    id: 'connect.tcp',
    category: 'connect',
    title: 'TCP',
    needs: ['connect.dns'],
    async run(ctx) {
      const url = serverUrl(ctx)
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
      try {
        await ctx.probes.tcp(url.hostname.replace(/^\[|\]$/g, ''), port)
        return pass(`${url.hostname}:${port} accepts connections`)
      } catch (error) {
        return fail(
          `${url.hostname}:${port}: ${(error as Error).message}`,
          'Check that Connect runs and that firewalls, proxies or security groups let this machine reach it.',
        )
      }
    },
  },
  {
    id: 'connect.tls',
    category: 'connect',
    title: 'TLS certificate',
    needs: ['connect.tcp'],
    async run(ctx) {
      const url = serverUrl(ctx)
      if (url.protocol === 'http:') {
        const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)
        return loopback
          ? pass('plain HTTP on loopback: nothing to check')
          : warn('plain HTTP: the API key crosses the network unencrypted', 'Use the https:// URL of Connect.')
      }
      const info = await ctx.probes.tls(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port || 443))
      const daysLeft = Math.floor((Date.parse(info.validTo) - ctx.probes.now()) / 86_400_000)
      if (!info.authorized) {
        const internal =
          info.selfSigned || /self[- ]signed|unable to get local issuer|UNABLE_TO_VERIFY/i.test(info.error ?? '')
        const expired = /expired/i.test(info.error ?? '') || daysLeft < 0
        const fix = expired
          ? 'Renew the server certificate (it has expired).'
          : internal
            ? `Trust your internal CA: pass --ca-certificate /path/ca.pem or set CONNECT_CA_CERTIFICATE${ctx.input.caCertificate ? ` (the current one, ${ctx.input.caCertificate}, does not verify it)` : ''}.`
            : 'Fix the server certificate (its name must match the URL and its chain must be complete).'
        return fail(
          `certificate not trusted: ${info.error ?? 'unknown reason'} (issuer ${info.issuer}, valid until ${info.validTo})`,
          fix,
        )
      }
      if (daysLeft < CERT_EXPIRY_WARN_DAYS)
        return warn(
          `the certificate expires in ${daysLeft} days (${info.validTo})`,
          'Renew the server certificate before it expires.',
        )
      return pass(`valid until ${info.validTo} (${daysLeft} days), issuer ${info.issuer}`)
    },
  },
  {
    id: 'connect.version',
    category: 'connect',
    title: `Connect version (≥ ${MIN_CONNECT_VERSION})`,
    needs: ['connect.tls', 'config.api-key'],
    async run(ctx) {
      const answer = await ctx.probes.serverVersion()
      if (!answer.ok) return answerFailure('the server settings', answer)
      if (!answer.value)
        return warn(
          'the server hides its version',
          `Make sure it is ${MIN_CONNECT_VERSION} or newer (persistent content storage); an admin can unhide the version.`,
        )
      const version = parseConnectVersion(answer.value)
      if (version && !connectVersionAtLeast(version, parseConnectVersion(MIN_CONNECT_VERSION)!))
        return fail(
          `Connect ${answer.value} is older than ${MIN_CONNECT_VERSION}`,
          `Upgrade Connect to ${MIN_CONNECT_VERSION}+ (the extension needs its persistent content storage).`,
        )
      return pass(`Connect ${answer.value}`)
    },
  },
  {
    id: 'connect.auth',
    category: 'connect',
    title: 'API key accepted',
    needs: ['connect.tls', 'config.api-key'],
    async run(ctx) {
      const answer = await ctx.probes.currentUser()
      if (!answer.ok) return answerFailure('the current user', answer)
      ctx.facts.user = answer.value
      if (answer.value.role === 'viewer')
        return warn(
          `${answer.value.username} is a viewer`,
          'Viewers cannot deploy or manage content: use a publisher or administrator key.',
        )
      return pass(`${answer.value.username} (${answer.value.role})`)
    },
  },
  {
    id: 'connect.access',
    category: 'connect',
    title: 'Rights on the content',
    needs: ['connect.auth', 'config.guid'],
    async run(ctx) {
      const answer = await ctx.probes.content(ctx.input.guid.value!)
      if (!answer.ok && answer.status === 404)
        return {
          ...fail(
            `Connect has no content with GUID ${ctx.input.guid.value}`,
            'Check --guid (the dashboard URL ends with it), or the server: a GUID belongs to one Connect server.',
          ),
          exit: 3,
        }
      if (!answer.ok) return answerFailure(`content ${ctx.input.guid.value}`, answer)
      ctx.facts.content = answer.value
      const user = ctx.facts.user!
      const relation =
        answer.value.ownerGuid === user.guid
          ? 'owner'
          : user.role === 'administrator'
            ? 'administrator'
            : 'collaborator'
      return pass(
        `${user.username} is ${relation === 'administrator' ? 'an administrator' : `the ${relation}`} of "${answer.value.name}"`,
      )
    },
  },
  {
    id: 'connect.content',
    category: 'connect',
    title: 'Content deployed, app mode',
    needs: ['connect.access'],
    async run(ctx) {
      const content = ctx.facts.content!
      if (!content.bundleId)
        return fail(
          'no bundle is active: the content was created but never deployed successfully',
          'Deploy it: mlflowctl deploy DIR --guid GUID.',
        )
      if (!['python-fastapi', 'python-api'].includes(content.appMode))
        return fail(
          `app mode is ${content.appMode}, not python-fastapi or python-api: this is not the MLflow extension`,
          'Check --guid, or redeploy a bundle rendered by mlflowctl init.',
        )
      return pass(`bundle ${content.bundleId}, app mode ${content.appMode}`)
    },
  },
  {
    id: 'connect.state',
    category: 'connect',
    title: 'Not locked, processes kept warm, last deploy',
    needs: ['connect.content'],
    async run(ctx) {
      const content = ctx.facts.content!
      if (content.locked)
        return fail(
          'the content is locked: it neither runs nor accepts deploys',
          'Unlock it in Connect (Settings > Info), or ask an administrator.',
        )
      const events = (await ctx.probes.history()).filter(
        (event) => event.guid === content.guid && (event.action === 'deploy' || event.action === 'rollback'),
      )
      const last = events.at(-1)
      const lastText = last
        ? `last ${last.action} from this machine ${last.result === 'ok' ? 'succeeded' : 'FAILED'} (${last.time})`
        : 'no deploy recorded on this machine'
      if (last && last.result !== 'ok')
        return fail(lastText, `See the task log in Connect, fix the cause, and redeploy; ${last.message ?? ''}`.trim())
      if ((content.minProcesses ?? 0) < 1)
        return warn(
          `min_processes is ${content.minProcesses ?? 'unset (0)'}: the server stops when idle and the next request waits for a cold start; ${lastText}`,
          'Set min_processes to 1 (mlflowctl deploy does; or Settings > Runtime in Connect).',
        )
      return pass(`min_processes ${content.minProcesses}; ${lastText}`)
    },
  },
  {
    id: 'connect.env',
    category: 'connect',
    title: 'Environment variable names for the storage mode',
    needs: ['connect.content'],
    async run(ctx) {
      const answer = await ctx.probes.environmentNames(ctx.input.guid.value!)
      if (!answer.ok) return answerFailure('the environment variable names', answer)
      ctx.facts.envNames = answer.value
      const mode = storageModeOf(ctx)!
      const required = [...REQUIRED_ENV[mode], 'MLFLOWCTL_OPS_TOKEN']
      const missing = required.filter((name) => !answer.value.includes(name))
      if (missing.length > 0)
        return fail(
          `storage mode ${mode} needs ${missing.join(', ')}, not set on the content`,
          `Set ${missing.length > 1 ? 'them' : 'it'}: mlflowctl deploy DIR --guid GUID ${missing.map((name) => `-E ${name}=…`).join(' ')}`,
        )
      return pass(`storage mode ${mode}: ${required.join(', ')} set`)
    },
  },
  {
    id: 'connect.oauth',
    category: 'connect',
    title: 'OAuth integration for cloud credentials',
    needs: ['connect.env'],
    async run(ctx) {
      const mode = storageModeOf(ctx)!
      if (!OAUTH_STORAGE_MODES.includes(mode)) return pass(`storage mode ${mode} needs none`)
      if (ctx.facts.envNames?.includes('MLFLOWCTL_CREDENTIALS'))
        return pass('MLFLOWCTL_CREDENTIALS is set: the content may use the SDK chain (ambient)')
      const answer = await ctx.probes.associations(ctx.input.guid.value!)
      if (!answer.ok) return answerFailure('the OAuth associations', answer)
      if (answer.value.length === 0)
        return fail(
          `storage mode ${mode} takes its credentials from a service-account OAuth integration, and none is associated`,
          'Associate one: mlflowctl deploy DIR --guid GUID --oauth-integration INTEGRATION_GUID (ask an admin for the GUID).',
        )
      return pass(`${answer.value.length} integration(s) associated`)
    },
  },
  {
    id: 'connect.vanity',
    category: 'connect',
    title: 'Vanity URL',
    needs: ['mlflow.health'],
    async run(ctx) {
      const answer = await ctx.probes.vanity(ctx.input.guid.value!)
      if (!answer.ok) return answerFailure('the vanity URL', answer)
      if (!answer.value) return pass('none set (the content URL works)')
      const url = new URL(answer.value.replace(/^\//, ''), serverUrl(ctx)).toString()
      const viaVanity = await ctx.probes.request(`${url.replace(/\/?$/, '/')}version`, {headers: keyHeader(ctx)})
      const viaGuid = await ctx.probes.request(`${ctx.facts.content!.contentUrl}version`, {headers: keyHeader(ctx)})
      if (viaVanity.status !== 200)
        return fail(
          `${answer.value} answers HTTP ${viaVanity.status}`,
          'Check the vanity path in Connect (Settings > Info); another item may own it.',
        )
      if (viaVanity.body !== viaGuid.body)
        return fail(
          `${answer.value} serves MLflow ${viaVanity.body.trim()}, but this content serves ${viaGuid.body.trim()}: it points at another content item`,
          'Move the vanity path to this content: mlflowctl deploy DIR --guid GUID --vanity PATH.',
        )
      return pass(`${answer.value} reaches this content`)
    },
  },
  // ---- 3. MLflow ----
  {
    id: 'mlflow.health',
    category: 'mlflow',
    title: 'MLflow answers /health',
    needs: ['connect.content'],
    async run(ctx) {
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}health`, {headers: keyHeader(ctx)})
      if (answer.status === 200) return pass('/health is OK')
      const logs = `${serverUrl(ctx)}connect/#/apps/${ctx.input.guid.value}/logs`
      if (answer.status === 502 || answer.status === 503)
        return fail(
          `the content is not running (HTTP ${answer.status}): stopped, crashing, or refusing to start`,
          `Read its log (${logs}); the extension says why it refused in a "startup.refused" line (missing variable, database ahead of the code, pending migrations with MLFLOWCTL_AUTO_MIGRATE=false).`,
        )
      if (answer.status === 403)
        return fail(
          'HTTP 403: MLflow refused the request (its allowed-hosts check), or Connect denied access',
          'Unset MLFLOW_SERVER_ALLOWED_HOSTS on the content (the extension derives it from CONNECT_SERVER), or include the Connect host in it.',
        )
      return fail(`/health answered HTTP ${answer.status || 'nothing'}`, `Read the content's log: ${logs}`)
    },
  },
  {
    id: 'extension.status',
    category: 'extension',
    title: 'Ops status endpoint',
    needs: ['mlflow.health'],
    unless: (ctx) =>
      ctx.input.opsToken
        ? undefined
        : 'no ops token for this content on this machine (mlflowctl deploy saves one; or pass --ops-token / MLFLOWCTL_OPS_TOKEN)',
    async run(ctx) {
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}_mlflowctl/status`, {
        headers: {...keyHeader(ctx), 'X-Mlflowctl-Ops-Token': ctx.input.opsToken!},
      })
      if (answer.status === 401)
        return fail(
          'the ops token was refused',
          'Use the token that was deployed (it is in the config dir of the machine that deployed), or redeploy to set a new one.',
        )
      if (answer.status === 503)
        return fail('MLFLOWCTL_OPS_TOKEN is not set on the content', 'Redeploy with mlflowctl deploy, which sets it.')
      if (answer.status !== 200)
        return fail(
          `the ops status answered HTTP ${answer.status}`,
          'Read the content log; the database may be unreachable.',
        )
      try {
        ctx.facts.ops = parseOpsStatus(answer.body)
      } catch (error) {
        return fail(
          (error as Error).message,
          (error as MlflowctlError).suggestionList?.[0] ?? 'Redeploy the extension with this mlflowctl.',
        )
      }
      return pass(
        `storage mode ${ctx.facts.ops.storageMode}, MLflow ${ctx.facts.ops.mlflowVersion}${ctx.facts.ops.credentialsSource ? `, credentials from ${ctx.facts.ops.credentialsSource}` : ''}`,
      )
    },
  },
  {
    id: 'mlflow.version',
    category: 'mlflow',
    title: "/version is the bundle's MLflow",
    needs: ['mlflow.health'],
    async run(ctx) {
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}version`, {headers: keyHeader(ctx)})
      const served = answer.body.trim()
      const pinned = ctx.facts.ops?.bundleMlflowVersion
      if (answer.status !== 200) return fail(`/version answered HTTP ${answer.status}`, 'Read the content log.')
      if (pinned && pinned !== served)
        return fail(
          `serves MLflow ${served}, the bundle pins ${pinned}`,
          'Redeploy the bundle so that Connect rebuilds its environment (mlflowctl deploy DIR --guid GUID).',
        )
      return pass(`MLflow ${served}${pinned ? ' (as pinned)' : ''}`)
    },
  },
  {
    id: 'mlflow.auth',
    category: 'mlflow',
    title: 'Client authentication styles',
    needs: ['mlflow.health'],
    async run(ctx) {
      const url = `${ctx.facts.content!.contentUrl}api/2.0/mlflow/experiments/search?max_results=1`
      const key = await ctx.probes.request(url, {headers: keyHeader(ctx)})
      const bearer = await ctx.probes.request(url, {headers: {Authorization: `Bearer ${ctx.input.apiKey.value}`}})
      const detail = `Key: HTTP ${key.status}; Bearer: HTTP ${bearer.status}`
      if (bearer.status === 200) return pass(`${detail}. Clients: MLFLOW_TRACKING_TOKEN=<api key> is enough`)
      if (key.status === 200)
        return pass(
          `${detail}. Clients: pip install the mlflow-connect-auth plugin and set MLFLOW_TRACKING_AUTH=connect-api-key (see mlflowctl client-env)`,
        )
      return fail(detail, "Neither style is accepted: check the key and the content's access settings.")
    },
  },
  {
    id: 'mlflow.rest',
    category: 'mlflow',
    title: 'REST round trip',
    needs: ['mlflow.health'],
    async run(ctx) {
      const answer = await ctx.probes.request(
        `${ctx.facts.content!.contentUrl}api/2.0/mlflow/experiments/search?max_results=5`,
        {headers: keyHeader(ctx)},
      )
      if (answer.status === 403)
        return fail(
          `experiments/search answered HTTP 403: ${answer.body.slice(0, 200)}`,
          "MLflow's allowed-hosts check refuses Connect's Host header: unset MLFLOW_SERVER_ALLOWED_HOSTS on the content (the extension derives it from CONNECT_SERVER), or add the Connect host to it.",
        )
      if (answer.status !== 200)
        return fail(
          `experiments/search answered HTTP ${answer.status}: ${answer.body.slice(0, 200)}`,
          'Read the content log: the database may be unreachable or its credentials refused.',
        )
      const count = ((JSON.parse(answer.body) as {experiments?: unknown[]}).experiments ?? []).length
      return pass(`experiments/search returned ${count} experiment(s)`)
    },
  },
  {
    id: 'mlflow.origin',
    category: 'mlflow',
    title: 'Requests from the Connect origin are accepted',
    needs: ['mlflow.rest'],
    async run(ctx) {
      const origin = serverUrl(ctx).origin
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}api/2.0/mlflow/experiments/search`, {
        method: 'POST',
        headers: {...keyHeader(ctx), Origin: origin, 'Content-Type': 'application/json'},
        body: '{"max_results": 1}',
      })
      if (answer.status === 403)
        return fail(
          `a POST with Origin ${origin} was refused (HTTP 403) by MLflow's host/CORS checks: the UI will not work`,
          'Unset MLFLOW_SERVER_ALLOWED_HOSTS and MLFLOW_SERVER_CORS_ALLOWED_ORIGINS on the content (the extension derives them from CONNECT_SERVER), or add the Connect host and origin.',
        )
      if (answer.status !== 200)
        return fail(`a POST with Origin ${origin} answered HTTP ${answer.status}`, 'Read the content log.')
      return pass(`POST with Origin ${origin} accepted`)
    },
  },
  {
    id: 'mlflow.artifacts',
    category: 'mlflow',
    title: 'Artifact upload, download and delete (--deep)',
    needs: ['mlflow.rest'],
    unless: (ctx) => (ctx.input.deep ? undefined : 'only with --deep (writes a small file to the artifact store)'),
    async run(ctx) {
      const path = `${ctx.facts.content!.contentUrl}api/2.0/mlflow-artifacts/artifacts/mlflowctl-doctor/${ctx.probes.newId()}.txt`
      const payload = `mlflowctl doctor probe ${new Date(ctx.probes.now()).toISOString()}`
      const put = await ctx.probes.request(path, {
        method: 'PUT',
        headers: {...keyHeader(ctx), 'Content-Type': 'text/plain'},
        body: payload,
      })
      if (put.status !== 200)
        return fail(
          `upload answered HTTP ${put.status}: ${put.body.slice(0, 200)}`,
          'The server cannot write to its artifact store: check MLFLOW_ARTIFACTS_DESTINATION, bucket permissions and the credentials (extension log).',
        )
      const get = await ctx.probes.request(path, {headers: keyHeader(ctx)})
      const del = await ctx.probes.request(path, {method: 'DELETE', headers: keyHeader(ctx)})
      if (get.status !== 200 || get.body !== payload)
        return fail(
          `download answered HTTP ${get.status}${get.status === 200 ? ' with other content' : ''}`,
          'Check read permissions on the artifact store.',
        )
      if (del.status !== 200)
        return warn(
          `delete answered HTTP ${del.status}; a probe file is left under mlflowctl-doctor/`,
          'Check delete permissions on the artifact store, and remove the probe file.',
        )
      return pass('a probe file was written, read back and deleted through the artifact proxy')
    },
  },
  // ---- 4. extension ----
  {
    id: 'extension.schema',
    category: 'extension',
    title: 'Database schema revision',
    needs: ['extension.status'],
    async run(ctx) {
      const ops = ctx.facts.ops!
      if (ops.schemaState === 'current') return pass(`at ${ops.dbRevision}, the head of MLflow ${ops.mlflowVersion}`)
      if (ops.schemaState === 'behind')
        return fail(
          `${ops.pendingMigrations?.length ?? '?'} migration(s) pending: the database is at ${ops.dbRevision}, MLflow ${ops.mlflowVersion} expects ${ops.expectedHead}`,
          'Back up, then restart or redeploy the content with MLFLOWCTL_AUTO_MIGRATE=true (the default), or run mlflowctl upgrade.',
        )
      if (ops.schemaState === 'unknown')
        return fail(
          `the database is at ${ops.dbRevision}, which MLflow ${ops.mlflowVersion} does not know: it is ahead of the code (a newer MLflow migrated it)`,
          'Deploy the MLflow version that migrated it (mlflowctl version bump / deploy), or restore a backup taken before.',
        )
      return fail(
        `schema state ${ops.schemaState} (revision ${ops.dbRevision ?? 'none'}, expected ${ops.expectedHead})`,
        'Read the extension log; restore a backup if the tables were changed by hand.',
      )
    },
  },
  {
    id: 'extension.free-space',
    category: 'extension',
    title: 'Free space in the data directory',
    needs: ['extension.status'],
    async run(ctx) {
      const ops = ctx.facts.ops!
      if (ops.dataDirFreeBytes == null) return pass('no local data directory (external storage)')
      const free = ops.dataDirFreeBytes
      const ratio = ops.dataDirTotalBytes ? free / ops.dataDirTotalBytes : undefined
      const text = `${formatBytes(free)} free${ratio === undefined ? '' : ` (${Math.round(ratio * 100)}%)`} in ${ops.dataDir}`
      if (free < ctx.input.minFreeBytes || (ratio !== undefined && ratio < ctx.input.minFreeRatio))
        return warn(
          `${text}, under ${formatBytes(ctx.input.minFreeBytes)} or ${Math.round(ctx.input.minFreeRatio * 100)}%`,
          'Free space (prune old snapshots in mlflowctl/snapshots, old artifacts), or ask the Connect admin for more.',
        )
      return pass(text)
    },
  },
  {
    id: 'extension.backup-age',
    category: 'extension',
    title: 'Age of the last backup',
    needs: ['config.guid'],
    unless: (ctx) => (ctx.input.maxBackupAgeMs === undefined ? 'only with --max-backup-age' : undefined),
    async run(ctx) {
      const backups = (await ctx.probes.history()).filter(
        (event) => event.guid === ctx.input.guid.value && event.action === 'backup' && event.result === 'ok',
      )
      const last = backups.at(-1)
      if (!last)
        return fail(
          'no successful backup of this content is recorded on this machine',
          'Take one: mlflowctl backup create (and schedule it, templates/cron).',
        )
      const age = ctx.probes.now() - Date.parse(last.time)
      if (age > ctx.input.maxBackupAgeMs!)
        return fail(
          `the last backup is ${formatAge(age)} old (${last.time})`,
          'Check the backup schedule (cron/systemd timer) and its log.',
        )
      return pass(`the last backup is ${formatAge(age)} old`)
    },
  },
  // ---- 5. database (from where doctor runs) ----
  {
    id: 'database.connect',
    category: 'database',
    title: 'Database reachable and authenticated from here',
    unless: (ctx) => (ctx.input.database ? undefined : 'only with --db URL'),
    async run(ctx) {
      const target = ctx.input.database!
      if (target.engine !== 'postgresql')
        return warn(`${target.engine} is not checked from here yet`, 'Check it with your database client.')
      try {
        const probe = await ctx.probes.probeDatabase(target)
        const revision = probe.alembicRevision
          ? `alembic revision ${probe.alembicRevision}`
          : 'no alembic_version table (not an MLflow database yet)'
        const expected = ctx.facts.ops?.expectedHead
        if (expected && probe.alembicRevision && probe.alembicRevision !== expected)
          return warn(
            `logged in as ${probe.user} (PostgreSQL ${probe.serverVersion}); ${revision}, the extension expects ${expected}`,
            'See extension.schema.',
          )
        return pass(`logged in as ${probe.user} (PostgreSQL ${probe.serverVersion}, auth ${target.auth}); ${revision}`)
      } catch (error) {
        const suggestions = (error as {suggestions?: string[]}).suggestions ?? []
        return fail((error as Error).message, suggestions[0] ?? 'Check the URL, the network path and the credentials.')
      }
    },
  },
  {
    id: 'database.artifacts',
    category: 'database',
    title: 'Artifact store reachable from here',
    unless: (ctx) => (ctx.input.artifacts ? undefined : 'only with --artifacts URL'),
    async run(ctx) {
      const location = ctx.input.artifacts!
      const store = await ctx.probes.objectStore(location)
      let info
      try {
        info = await store.describe()
      } catch (error) {
        return fail(
          `${location.display}: ${(error as Error).message}`,
          'Check the credentials this machine uses for the store (AWS/Azure/Google SDK configuration) and that they may list the bucket or container.',
        )
      }
      const kind = location.scheme === 'wasbs' ? 'container' : 'bucket'
      if (!info.exists)
        return fail(
          `the ${kind} ${location.bucket} does not exist`,
          `Create it (in the server's region), or fix MLFLOW_ARTIFACTS_DESTINATION on the content.`,
        )
      const where = info.region ? ` in ${info.region}` : ''
      if (location.scheme === 's3' && info.region && ctx.input.awsRegion && info.region !== ctx.input.awsRegion) {
        return warn(
          `the bucket is in ${info.region}, but AWS_REGION is ${ctx.input.awsRegion}`,
          `Set AWS_REGION=${info.region} (on the content and here): S3 requests signed for another region are redirected or refused.`,
        )
      }
      if (!ctx.input.deep) return pass(`the ${kind} ${location.bucket} exists${where}`)
      const key = joinKey(location, `mlflowctl-doctor/${ctx.probes.newId()}.txt`)
      const payload = Buffer.from(`mlflowctl doctor probe ${new Date(ctx.probes.now()).toISOString()}`)
      try {
        await store.put(key, payload)
        const read = await store.get(key)
        await store.delete(key)
        if (!read.equals(payload))
          return fail(
            `${key} read back different bytes`,
            'Check the store for a proxy or policy that rewrites objects.',
          )
      } catch (error) {
        return fail(
          `write/read/delete of ${key} failed: ${(error as Error).message}`,
          'The credentials here may list but not write, read or delete: check the bucket policy or role assignment.',
        )
      }
      return pass(`the ${kind} ${location.bucket} exists${where}; a probe object was written, read back and deleted`)
    },
  },
  // ---- 6. local client ----
  {
    id: 'client.mlflow',
    category: 'client',
    title: 'Local MLflow client version',
    async run(ctx, results: Results) {
      const local = await ctx.probes.localMlflowVersion()
      if (!local) return pass('no mlflow Python package found here (nothing to compare)')
      const server = ctx.facts.ops?.mlflowVersion ?? results.get('mlflow.version')?.detail.match(/MLflow (\S+)/)?.[1]
      if (!server) return pass(`mlflow ${local} (server version unknown)`)
      const [l, s] = [semver.coerce(local), semver.coerce(server)]
      if (l && s && l.major !== s.major)
        return warn(
          `client mlflow ${local}, server ${server}: different major versions`,
          `Install a client of the server's line: pip install "mlflow==${server}".`,
        )
      if (l && s && semver.gt(l, s))
        return warn(
          `client mlflow ${local} is newer than the server (${server}): newer clients may call APIs the server lacks`,
          `Pin the client: pip install "mlflow==${server}", or upgrade the server (mlflowctl upgrade).`,
        )
      return pass(`client mlflow ${local}, server ${server}`)
    },
    needs: ['mlflow.version'],
  },
]

function formatAge(ms: number): string {
  const hours = ms / 3_600_000
  return hours < 48 ? `${Math.round(hours)} h` : `${Math.round(hours / 24)} days`
}

/** The exit code doctor keeps: 3 configuration missing or wrong, 4 authentication refused, 6 any other
 * failure, 0 when everything passed or warned. */
export function doctorExitCode(results: Array<{id: string; status: string; exit?: 3 | 4}>): 0 | 3 | 4 | 6 {
  const failed = results.filter((result) => result.status === 'fail')
  if (failed.some((result) => result.id.startsWith('config.') || result.exit === 3)) return 3
  if (failed.some((result) => result.exit === 4)) return 4
  return failed.length > 0 ? 6 : 0
}
