// A fake Posit Connect that follows Connect's documented API and runtime. Faithful where the behaviour is
// documented; where it is not, the behaviour is a switch (see FakeConnectOptions).
import {spawn} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import * as tar from 'tar'

import {
  DeployFailure,
  launchApp,
  prepareApp,
  startApp,
  unpackBundle,
  type PreparedApp,
  type RunningApp,
  type RuntimeOptions,
} from './runtime.js'

export interface FakeUser {
  guid: string
  username: string
  user_role: 'viewer' | 'publisher' | 'administrator'
}

export interface FakeConnectOptions extends RuntimeOptions {
  workDir: string
  users: Record<string, FakeUser> // API key -> user
  /** null hides the version, as an admin can. */
  version?: string | null
  /** UNCONFIRMED whether Connect accepts `Bearer <api key>`; assumed not. */
  acceptBearer?: boolean
  /** UNCONFIRMED whether Connect strips /content/<guid> before the app sees the path. */
  stripPrefix?: boolean
  /** OAuth integrations by GUID, and what the token exchange issues for each. */
  integrations?: Record<string, FakeIntegration>
  /** Connect >= 2026.02 also hands the session token as a file (CONNECT_CONTENT_SESSION_TOKEN_FILE). */
  sessionTokenFile?: boolean
  /** UNCONFIRMED whether Connect routes sub-paths of a draft preview (/_bundle{id}/health); only the root is
   * documented. false: sub-paths get Connect's own 404. */
  draftSubpaths?: boolean
  /** 'paged': answer the bundle list in pages ({results, current_page, total}, newest first), as the experimental
   * endpoint does and as Connect's OpenAPI spec once described v1; default 'array', what v1 answers. */
  bundleList?: 'array' | 'paged'
  /** The largest page of a paged bundle list; small in tests that page. */
  bundlePageMax?: number
  /** false: the server gives content no persistent data directory (CONNECT_CONTENT_DATA_DIR unset), as servers
   * without the feature do. */
  persistentStorage?: boolean
  /** false: publishers may not manage vanity paths (Authorization.PublishersCanManageVanities=false): 400, code 52. */
  publishersCanManageVanities?: boolean
}

export interface ExchangeRequest {
  contentGuid: string
  requestedTokenType: string
  scope?: string
}

export interface FakeIntegration {
  name: string
  template: 'aws' | 'azure' | 'custom' | 'connect'
  issue(
    request: ExchangeRequest,
  ): Promise<{access_token: string; issued_token_type: string; token_type: string; expires_in?: number}>
}

const AWS_CREDENTIALS = 'urn:ietf:params:aws:token-type:credentials'
const CONTENT_SESSION_TOKEN = 'urn:posit:connect:content-session-token'

interface Content {
  guid: string
  name: string
  title: string | null
  owner: FakeUser
  collaborators: Set<string>
  /** Users with the viewer role in the content's ACL: they see it and may open it, but not manage it. */
  viewers: Set<string>
  /** Tag IDs. */
  tags: Set<string>
  settings: Record<string, unknown>
  env: Map<string, string>
  bundles: Array<{id: string; created_time: string; file: string; size: number; appmode?: string}>
  activeBundle: string | null
  app_mode: string
  vanity: string | null
  associations: string[]
  locked: boolean
  /** The content session token its processes get; traded for integration credentials. */
  sessionToken: string
  running?: RunningApp
  /** Rendered content (quarto-static): the output of the last render, served at the content's URL. */
  rendered?: {dir: string; email: {scheduled: boolean; subject: string | null}}
  /** Numeric IDs, as the unversioned API (variants, schedules) names content. */
  appId: number
  /** Draft bundles, prepared by their deploy task; a draft's process starts on its first request. */
  drafts: Map<string, {app: PreparedApp; running?: Promise<RunningApp>}>
}

interface Task {
  id: string
  output: string[]
  finished: boolean
  code: number
  error: string
}

const WRITABLE = new Set([
  'name',
  'title',
  'description',
  'access_type',
  'min_processes',
  'max_processes',
  'idle_timeout',
  'init_timeout',
  'locked',
  'locked_message',
])
const err = (code: number, error: string) => ({code, error, payload: null})

export class FakeConnect {
  readonly content = new Map<string, Content>()
  readonly tasks = new Map<string, Task>()
  /** Every API call, for assertions ("which endpoints did mlflowctl use"). */
  readonly calls: string[] = []
  /** The body of every deploy request, for assertions (a hidden-version server gets no `activate`). */
  readonly deployRequests: Array<Record<string, unknown>> = []
  /** Every request to content (its path), for assertions ("what did verification read"). */
  readonly contentRequests: string[] = []
  /** Successful token exchanges, per content GUID. */
  readonly exchanges = new Map<string, number>()
  private server?: Server
  private nextBundle = 100
  private nextAppId = 1
  private nextSchedule = 1
  /** Render schedules (Connect's unversioned, experimental API), by ID. */
  readonly schedules = new Map<number, Record<string, unknown>>()
  /** Every render of rendered content: what Connect would have emailed to the schedule's recipients. */
  readonly renders: Array<{guid: string; bundleId: string; email: {scheduled: boolean; subject: string | null}}> = []
  private stopped = false
  /** Deploy tasks still running, so that stop() can wait for them and leave no process behind. */
  private readonly inFlight = new Set<Promise<void>>()
  url = ''

  constructor(readonly options: FakeConnectOptions) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res))
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/`
    return this.url
  }

  async stop(): Promise<void> {
    this.stopped = true
    await Promise.allSettled([...this.inFlight])
    for (const item of this.content.values()) {
      await item.running?.stop()
      for (const draft of item.drafts.values()) await (await draft.running?.catch(() => undefined))?.stop()
    }
    await new Promise((resolve) => this.server?.close(resolve))
  }

  private user(req: IncomingMessage): FakeUser | undefined {
    const auth = String(req.headers.authorization ?? req.headers['x-rsc-authorization'] ?? '')
    const match = /^(Key|Bearer)\s+(\S+)$/.exec(auth)
    if (!match || (match[1] === 'Bearer' && !this.options.acceptBearer)) return undefined
    return this.options.users[match[2]]
  }

  private canManage(user: FakeUser, item: Content): boolean {
    return item.owner.guid === user.guid || item.collaborators.has(user.guid) || user.user_role === 'administrator'
  }

  /** Viewers in the ACL see the item too (GET v1/content lists what the caller may view). */
  private canView(user: FakeUser, item: Content): boolean {
    return this.canManage(user, item) || item.viewers.has(user.guid)
  }

  /** Content's app_role for the caller, from the content's ACL: owner, editor (collaborator), viewer or none. An
   * administrator outside the ACL gets none, although the administrator may manage the item. */
  private appRole(user: FakeUser, item: Content): string {
    if (item.owner.guid === user.guid) return 'owner'
    if (item.collaborators.has(user.guid)) return 'editor'
    return item.viewers.has(user.guid) ? 'viewer' : 'none'
  }

  /** Tags by ID; only administrators create them (POST v1/tags). */
  readonly tags = new Map<string, {id: string; name: string}>()
  private nextTag = 1
  /** Content whose processes get no CONNECT_CONTENT_DATA_DIR (a server where the item's storage is off). */
  readonly withoutDataDir = new Set<string>()

  /** Starts the active bundle's process again with the current environment and returns once it listens, answering
   * or not (a start that its extension refuses stays refused). */
  async startContent(guid: string): Promise<void> {
    const item = this.content.get(guid)!
    await item.running?.stop()
    item.running = undefined
    const dir = join(this.options.workDir, 'apps', item.guid, `bundle-${item.activeBundle}`)
    item.running = await startApp(
      this.options,
      item.activeBundle!,
      dir,
      item.app_mode,
      this.processEnv(item),
      () => undefined,
      this.initTimeoutMs(item),
    )
  }

  /** Stops the item's process; requests then get Connect's "not running" answer until the next deploy. */
  async stopContent(guid: string): Promise<void> {
    const item = this.content.get(guid)!
    await item.running?.stop()
    item.running = undefined
  }

  private view(item: Content) {
    return {
      guid: item.guid,
      name: item.name,
      title: item.title,
      app_mode: item.app_mode,
      bundle_id: item.activeBundle,
      locked: item.locked,
      owner_guid: item.owner.guid,
      // Computed from the vanity path when there is one, else from the GUID (Connect's content fields).
      content_url: item.vanity ? `${this.url}${item.vanity.slice(1)}` : `${this.url}content/${item.guid}/`,
      dashboard_url: `${this.url}connect/#/apps/${item.guid}`,
      min_processes: null,
      max_processes: null,
      ...item.settings,
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url)
    const send = (status: number, body?: unknown) => {
      if (Buffer.isBuffer(body))
        return void (res.writeHead(status, {'content-type': 'application/gzip'}), res.end(body))
      res.writeHead(status, body === undefined ? {} : {'content-type': 'application/json'})
      res.end(body === undefined ? undefined : JSON.stringify(body))
    }
    const user = this.user(req)
    if (!url.pathname.startsWith('/__api__/')) {
      this.contentRequests.push(url.pathname)
      return void (await this.proxy(req, res, url, user))
    }
    this.calls.push(
      `${req.method} ${url.pathname.replace(/[0-9a-f-]{36}/g, '{guid}').replace(/\/(tasks|bundles)\/\w+/, '/$1/{id}')}`,
    )
    if (!user) return send(401, err(30, 'Invalid login.'))
    const body = await readBody(req)
    const path = url.pathname.slice('/__api__'.length)
    if (path === '/v1/oauth/integrations/credentials' && req.method === 'POST')
      return this.exchange(new URLSearchParams(body.toString()), req, send)
    if (path === '/v1/oauth/integrations' && req.method === 'GET') {
      return send(
        200,
        Object.entries(this.options.integrations ?? {}).map(([guid, i]) => ({
          guid,
          name: i.name,
          template: i.template,
          auth_type: 'Service Account',
          config: {},
        })),
      )
    }
    if (path === '/v1/user' && req.method === 'GET')
      return send(200, {...user, email: `${user.username}@example.com`, locked: false, confirmed: true})
    if (path === '/server_settings' && req.method === 'GET')
      return send(
        200,
        this.options.version === null
          ? {hostname: 'fake'}
          : {version: this.options.version ?? '2025.10.0', hostname: 'fake'},
      )
    // The defaults content of an app mode starts with (Publisher reads init_timeout here).
    if (/^\/server_settings\/scheduler(\/[\w-]+)?$/.test(path) && req.method === 'GET')
      return send(200, {init_timeout: this.defaultInitTimeout(), idle_timeout: 120, max_conns_per_process: 20})
    if (path === '/v1/content' && req.method === 'POST')
      return this.createContent(user, JSON.parse(body.toString() || '{}'), send)
    if (path === '/v1/content' && req.method === 'GET') {
      const include = new Set((url.searchParams.get('include') ?? '').split(','))
      return send(
        200,
        [...this.content.values()]
          .filter((item) => this.canView(user, item))
          .map((item) => ({
            ...this.view(item),
            app_role: this.appRole(user, item),
            ...(include.has('tags') ? {tags: [...item.tags].map((id) => this.tags.get(id))} : {}),
            ...(include.has('owner') ? {owner: {guid: item.owner.guid, username: item.owner.username}} : {}),
          })),
      )
    }
    if (path === '/v1/tags' && req.method === 'GET') {
      const name = url.searchParams.get('name')
      return send(
        200,
        [...this.tags.values()].filter((tag) => !name || tag.name === name),
      )
    }
    if (path === '/v1/tags' && req.method === 'POST') {
      if (user.user_role !== 'administrator')
        return send(403, err(22, 'You do not have permission to perform this operation.'))
      const tag = {
        id: String(this.nextTag++),
        name: String((JSON.parse(body.toString() || '{}') as {name?: string}).name),
      }
      this.tags.set(tag.id, tag)
      return send(200, tag)
    }
    if (this.schedulingRoute(user, req.method ?? 'GET', path, body, send)) return
    const task = /^\/v1\/tasks\/(\w+)$/.exec(path)
    if (task && req.method === 'GET') return this.pollTask(task[1], url, send)
    const match = /^\/v1\/content\/([^/]+)(\/.*)?$/.exec(path)
    if (!match) return send(404, err(4, 'Not found.'))
    const item = this.content.get(match[1])
    if (!item) return send(404, err(4, 'Content not found.'))
    // A viewer may read the item itself, nothing under it (bundles, environment, permissions need a collaborator).
    if (this.canView(user, item) && !match[2] && req.method === 'GET')
      return send(200, {...this.view(item), app_role: this.appRole(user, item)})
    if (!this.canManage(user, item)) return send(403, err(22, 'You do not have permission to perform this operation.'))
    return this.contentRoute(item, req.method ?? 'GET', match[2] ?? '', body, send, url.searchParams, user)
  }

  private createContent(user: FakeUser, body: {name?: string; title?: string}, send: (s: number, b?: unknown) => void) {
    if (user.user_role === 'viewer') return send(403, err(22, 'You do not have permission to perform this operation.'))
    const name = body.name ?? ''
    // Error 5, HTTP 400: a content name must be 3-64 letters, digits, - or _ (Connect's API error table).
    if (name && !/^[A-Za-z0-9_-]{3,64}$/.test(name)) return send(400, err(5, 'Invalid content name.'))
    // Name conflict status is UNCONFIRMED: 409 assumed.
    if (name && [...this.content.values()].some((c) => c.owner.guid === user.guid && c.name === name))
      return send(409, err(26, 'A content item with that name already exists.'))
    const item: Content = {
      guid: randomUUID(),
      name,
      title: body.title ?? null,
      owner: user,
      collaborators: new Set(),
      viewers: new Set(),
      tags: new Set(),
      settings: {},
      env: new Map(),
      bundles: [],
      activeBundle: null,
      app_mode: 'unknown',
      vanity: null,
      associations: [],
      locked: false,
      sessionToken: `cst-${randomUUID()}`,
      appId: this.nextAppId++,
      drafts: new Map(),
    }
    this.content.set(item.guid, item)
    send(200, this.view(item))
  }

  private contentRoute(
    item: Content,
    method: string,
    sub: string,
    body: Buffer,
    send: (s: number, b?: unknown) => void,
    query: URLSearchParams,
    user: FakeUser,
  ) {
    const json = () => JSON.parse(body.toString() || 'null')
    if (sub === '' && method === 'GET') return send(200, this.view(item))
    if (sub === '' && method === 'PATCH') {
      const patch = json() as Record<string, unknown>
      const unknown = Object.keys(patch).filter((key) => !WRITABLE.has(key))
      // Error 121, HTTP 400: an unknown field or invalid JSON in the request (Connect's API error table).
      if (unknown.length > 0) return send(400, err(121, `Unknown fields: ${unknown.join(', ')}`))
      for (const [key, value] of Object.entries(patch)) {
        if (key === 'title') item.title = value as string
        else if (key === 'locked') item.locked = Boolean(value)
        else item.settings[key] = value
      }
      return send(200, this.view(item))
    }
    if (sub === '/environment' && method === 'GET') return send(200, [...item.env.keys()].sort())
    if (sub === '/environment' && (method === 'PATCH' || method === 'PUT')) {
      if (method === 'PUT') item.env.clear()
      for (const {name, value} of json() as Array<{name: string; value: string | null}>) {
        if (value === null) item.env.delete(name)
        else item.env.set(name, value)
      }
      // 200 with the names now set (OpenAPI EnvironmentVariable).
      return send(200, [...item.env.keys()].sort())
    }
    if (sub === '/bundles' && method === 'POST') {
      const id = String(this.nextBundle++)
      const dir = join(this.options.workDir, 'bundles', item.guid)
      mkdirSync(dir, {recursive: true})
      const file = join(dir, `${id}.tar.gz`)
      writeFileSync(file, body)
      item.bundles.push({
        id,
        created_time: new Date().toISOString(),
        file,
        size: body.length,
        appmode: manifestAppMode(file),
      })
      return send(200, {
        id,
        content_guid: item.guid,
        active: false,
        size: body.length,
        created_time: item.bundles.at(-1)!.created_time,
      })
    }
    const download = /^\/bundles\/(\w+)\/download$/.exec(sub)
    if (download && method === 'GET') {
      const bundle = item.bundles.find((b) => b.id === download[1])
      if (!bundle) return send(404, err(4, 'Bundle not found.'))
      return send(200, readFileSync(bundle.file))
    }
    if (sub === '/bundles' && method === 'GET' && this.options.bundleList !== 'paged') {
      // v1: a bare array of every bundle, in no documented order (posit-sdk and connectapi read it so): upload
      // order here, so that a reader that does not sort is caught.
      return send(
        200,
        item.bundles.map((b) => ({
          id: b.id,
          content_guid: item.guid,
          active: b.id === item.activeBundle,
          size: b.size,
          created_time: b.created_time,
        })),
      )
    }
    if (sub === '/bundles' && method === 'GET') {
      // Paged: newest first, default page size 20, {results, current_page, total}.
      const size = Math.min(Number(query.get('page_size') ?? 20) || 20, this.options.bundlePageMax ?? 500)
      const page = Math.max(1, Number(query.get('page_number') ?? 1) || 1)
      const newestFirst = [...item.bundles].sort((a, b) => Number(b.id) - Number(a.id))
      const results = newestFirst.slice((page - 1) * size, page * size).map((b) => ({
        id: b.id,
        content_guid: item.guid,
        active: b.id === item.activeBundle,
        size: b.size,
        created_time: b.created_time,
      }))
      return send(200, {results, current_page: page, total: item.bundles.length})
    }
    if (sub === '/deploy' && method === 'POST') {
      if (item.locked) return send(403, err(22, 'Content is locked.'))
      const request = json() as {bundle_id?: string; activate?: boolean}
      this.deployRequests.push(request)
      // Before 2025.06 the field is unknown and rejected (additionalProperties: false; rsconnect
      // server_supports_draft_deploy). A hidden version may be such a server: the fake is as strict as it can be.
      if ('activate' in request && !this.draftsSupported()) return send(400, err(121, 'Unknown field: activate.'))
      const {bundle_id: bundleId, activate = true} = request
      const bundle = item.bundles.find((b) => b.id === (bundleId ?? item.bundles.at(-1)?.id))
      if (!bundle) return send(404, err(4, 'Bundle not found.'))
      // Error 48, HTTP 403: "You cannot change the type of application once deployed" (Connect's API error table,
      // where it is named AppModeChanged).
      if (item.app_mode !== 'unknown' && bundle.appmode && bundle.appmode !== item.app_mode)
        return send(
          403,
          err(
            48,
            'You cannot change the type of application once deployed. Try deploying this as a new application instead of updating an existing one.',
          ),
        )
      const task: Task = {id: randomUUID().replaceAll('-', ''), output: [], finished: false, code: 0, error: ''}
      this.tasks.set(task.id, task)
      const running = this.runDeploy(item, bundle, activate, task).finally(() => this.inFlight.delete(running))
      this.inFlight.add(running)
      // 202 Accepted with the task (OpenAPI ContentDeploymentInstructions).
      return send(202, {task_id: task.id})
    }
    if (sub === '/vanity' && method === 'GET')
      return item.vanity ? send(200, {content_guid: item.guid, path: item.vanity}) : send(404, err(4, 'No vanity URL.'))
    if (sub === '/vanity' && method === 'PUT') {
      const path = `/${String((json() as {path: string}).path).replace(/^\/+|\/+$/g, '')}/`
      // Error 52, HTTP 400: vanity not permitted (a reserved path, or publishers may not manage vanities);
      // error 51, HTTP 409: the path is taken (Connect's API error table).
      if (/^\/(__|connect|content|apps|users|groups|login|settings)/.test(path))
        return send(400, err(52, 'This vanity path is not permitted.'))
      if (this.options.publishersCanManageVanities === false && user.user_role !== 'administrator')
        return send(400, err(52, 'Publishers may not manage vanity paths on this server.'))
      const taken = [...this.content.values()].find((c) => c.vanity === path && c.guid !== item.guid)
      if (taken) return send(409, err(51, 'Vanity path already in use.'))
      item.vanity = path
      return send(200, {content_guid: item.guid, path})
    }
    if (sub === '/oauth/integrations/associations' && method === 'GET')
      return send(
        200,
        item.associations.map((id) => ({app_guid: item.guid, oauth_integration_guid: id})),
      )
    if (sub === '/oauth/integrations/associations' && method === 'PUT') {
      item.associations = (json() as Array<{oauth_integration_guid: string}>).map((a) => a.oauth_integration_guid)
      return send(204)
    }
    if (sub === '/tags' && method === 'POST') {
      const tagId = String((json() as {tag_id?: string | number}).tag_id)
      if (!this.tags.has(tagId)) return send(404, err(4, 'Tag not found.'))
      item.tags.add(tagId)
      return send(200, this.tags.get(tagId))
    }
    if (sub === '/permissions' && method === 'GET')
      return send(
        200,
        [...item.collaborators].map((guid, i) => ({
          id: i + 1,
          content_guid: item.guid,
          principal_guid: guid,
          principal_type: 'user',
          role: 'owner',
        })),
      )
    if (sub === '/permissions' && method === 'POST') {
      const {principal_guid: principal, role} = json() as {principal_guid: string; role: string}
      const principalUser = Object.values(this.options.users).find((u) => u.guid === principal)
      if (!principalUser) return send(404, err(4, 'User not found.'))
      // role "owner" in an ACL entry makes a collaborator, who must be a publisher or administrator (§9.2).
      if (role === 'owner' && principalUser.user_role === 'viewer')
        return send(400, err(3, 'Collaborators must be publishers or administrators.'))
      if (role === 'owner') item.collaborators.add(principal)
      if (role === 'viewer') item.viewers.add(principal)
      return send(200, {
        id: item.collaborators.size,
        content_guid: item.guid,
        principal_guid: principal,
        principal_type: 'user',
        role,
      })
    }
    send(404, err(4, 'Not found.'))
  }

  /**
   * Variants and schedules of rendered content: GET applications/{guid}/variants, GET variants/{id}/schedules,
   * POST schedules (create) and POST schedules/{id} (full replace), as Posit's Python SDK calls them. Only rendered content
   * has variants; a schedule names its app and variant by numeric ID and must say `activate` (omitted, Connect
   * stores false and the schedule runs without effect). False for any other path.
   */
  private schedulingRoute(
    user: FakeUser,
    method: string,
    path: string,
    body: Buffer,
    send: (s: number, b?: unknown) => void,
  ): boolean {
    const variants = /^\/applications\/([^/]+)\/variants$/.exec(path)
    const variantSchedules = /^\/variants\/(\d+)\/schedules$/.exec(path)
    const schedule = /^\/schedules(?:\/(\d+))?$/.exec(path)
    if (!variants && !variantSchedules && !schedule) return false
    const answer = (status: number, payload: unknown) => (send(status, payload), true)
    const byAppId = (id: unknown) => [...this.content.values()].find((c) => c.appId === Number(id))
    if (variants && method === 'GET') {
      const item = this.content.get(variants[1])
      if (!item) return answer(404, err(4, 'Content not found.'))
      if (!this.canView(user, item))
        return answer(403, err(22, 'You do not have permission to perform this operation.'))
      if (!item.rendered) return answer(200, [])
      return answer(200, [{id: item.appId * 10, app_id: item.appId, key: `v${item.appId}`, is_default: true}])
    }
    if (variantSchedules && method === 'GET') {
      const variantId = Number(variantSchedules[1])
      const item = byAppId(variantId / 10)
      if (!item) return answer(404, err(4, 'Variant not found.'))
      if (!this.canView(user, item))
        return answer(403, err(22, 'You do not have permission to perform this operation.'))
      return answer(
        200,
        [...this.schedules.values()].filter((entry) => entry.variant_id === variantId),
      )
    }
    if (schedule && method === 'POST') {
      const record = JSON.parse(body.toString() || '{}') as Record<string, unknown>
      const item = byAppId(record.app_id)
      if (!item || record.variant_id !== item.appId * 10) return answer(404, err(4, 'Variant not found.'))
      if (!this.canManage(user, item))
        return answer(403, err(22, 'You do not have permission to perform this operation.'))
      const types = [
        'minute',
        'hour',
        'day',
        'weekday',
        'week',
        'dayofweek',
        'semimonth',
        'dayofmonth',
        'dayweekofmonth',
        'year',
      ]
      const missing = ['type', 'schedule', 'start_time', 'timezone', 'app_id', 'variant_id'].filter(
        (f) => !(f in record),
      )
      if (missing.length > 0) return answer(400, err(3, `Missing fields: ${missing.join(', ')}.`))
      if (!types.includes(String(record.type))) return answer(400, err(3, 'Unknown schedule type.'))
      try {
        JSON.parse(String(record.schedule))
      } catch {
        return answer(400, err(3, 'schedule must be a JSON string.'))
      }
      const id = schedule[1] ? Number(schedule[1]) : this.nextSchedule++
      if (schedule[1] && !this.schedules.has(id)) return answer(404, err(4, 'Schedule not found.'))
      // Full replace: an omitted writable field is reset (activate to false).
      const stored = {email: false, activate: false, ...record, id, next_run: record.start_time}
      this.schedules.set(id, stored)
      return answer(200, stored)
    }
    return answer(404, err(4, 'Not found.'))
  }

  /** The variables Connect gives the content's processes, plus its own. */
  private processEnv(item: Content): Record<string, string> {
    const dataDir = join(this.options.workDir, 'data', item.guid) // survives redeploys
    if (this.options.persistentStorage !== false) mkdirSync(dataDir, {recursive: true})
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      ...Object.fromEntries(item.env),
      CONNECT_SERVER: this.url,
      CONNECT_API_KEY: Object.entries(this.options.users).find(([, u]) => u.guid === item.owner.guid)![0],
      CONNECT_CONTENT_GUID: item.guid,
      ...(this.options.persistentStorage === false || this.withoutDataDir.has(item.guid)
        ? {}
        : {CONNECT_CONTENT_DATA_DIR: dataDir}),
      RSTUDIO_PRODUCT: 'CONNECT',
      POSIT_PRODUCT: 'CONNECT',
      CONNECT_CONTENT_SESSION_TOKEN: item.sessionToken,
    }
    if (this.options.sessionTokenFile) {
      const tokenFile = join(this.options.workDir, 'session-tokens', item.guid)
      mkdirSync(join(tokenFile, '..'), {recursive: true})
      writeFileSync(tokenFile, `${item.sessionToken}\n`, {mode: 0o600})
      env.CONNECT_CONTENT_SESSION_TOKEN_FILE = tokenFile
      delete env.CONNECT_CONTENT_SESSION_TOKEN
    }
    return env
  }

  /** Drafts (`activate: false`) exist from 2025.06; a hidden version counts as older (the strict reading). */
  private draftsSupported(): boolean {
    const version = this.options.version === undefined ? '2025.10.0' : this.options.version
    if (!version) return false
    const [year, month] = version.split('.').map(Number)
    return year > 2025 || (year === 2025 && month >= 6)
  }

  /** Content whose next started bundle process is killed once it has started (test fault injection). */
  readonly crashAfterStart = new Set<string>()

  /** Restarts the active bundle with the current environment, as Connect does after an env var change in
   * its UI. Resolves when the new process answers /health (or rejects when it does not). */
  async restart(guid: string): Promise<void> {
    await this.startContent(guid)
    await untilHealthy(this.content.get(guid)!.running!.port)
  }

  /** Connect's Scheduler.InitTimeout: 60 s unless the test's server says otherwise. */
  private defaultInitTimeout(): number {
    return this.options.initTimeoutSeconds ?? 60
  }

  /** The item's effective init_timeout: its own setting, else the server's default. */
  private initTimeoutMs(item: Content): number {
    const own = item.settings.init_timeout
    return (typeof own === 'number' && own > 0 ? own : this.defaultInitTimeout()) * 1000
  }

  /** Fault injection (crashAfterStart): the process dies right after its start-up steps (migrations included) ran. */
  private async maybeCrash(item: Content, app: RunningApp): Promise<RunningApp> {
    if (!this.crashAfterStart.delete(item.guid)) return app
    await untilHealthy(app.port)
    app.process.kill('SIGKILL')
    await app.stop().catch(() => undefined)
    return app
  }

  /** A draft's process, started on its first request as Connect does ("spins the process up cold"); requests
   * that arrive while it starts wait for the same start. */
  private draftProcess(item: Content, bundleId: string): Promise<RunningApp> | undefined {
    const draft = item.drafts.get(bundleId)
    if (!draft) return undefined
    if (!draft.running) {
      draft.running = launchApp(draft.app, this.processEnv(item), this.initTimeoutMs(item), () => undefined).then(
        (app) => this.maybeCrash(item, app),
      )
      // A start that failed is retried by the next request, as Connect does.
      draft.running.catch(() => item.drafts.get(bundleId) === draft && (draft.running = undefined))
    }
    return draft.running
  }

  private async runDeploy(
    item: Content,
    bundle: {id: string; file: string},
    activate: boolean,
    task: Task,
  ): Promise<void> {
    const log = (line: string) => task.output.push(line)
    try {
      log(`Deploying bundle: ${bundle.id}`)
      const existingDraft = item.drafts.get(bundle.id)
      let prepared = existingDraft?.app
      if (!prepared) {
        const dir = join(this.options.workDir, 'apps', item.guid, `bundle-${bundle.id}`)
        const manifest = await unpackBundle(bundle.file, dir)
        item.app_mode = manifest.appmode
        prepared = await prepareApp(this.options, bundle.id, dir, manifest.appmode, log)
      }
      if (STATIC_RENDERED.has(item.app_mode)) {
        log('Rendering the document...')
        item.rendered = await renderDocument(prepared, this.processEnv(item), log)
        this.renders.push({guid: item.guid, bundleId: bundle.id, email: item.rendered.email})
        item.activeBundle = bundle.id
        log('Activated.')
        return
      }
      if (!activate) {
        // A draft's process starts on its first request (rsconnect: the preview "spins the process up cold").
        item.drafts.set(bundle.id, existingDraft ?? {app: prepared})
        log(`Draft ready at /content/${item.guid}/_bundle${bundle.id}/`)
        return
      }
      let app = existingDraft?.running ? await existingDraft.running.catch(() => undefined) : undefined
      if (!app) {
        log('Launching the application...')
        app = await launchApp(prepared, this.processEnv(item), this.initTimeoutMs(item), log)
        await this.maybeCrash(item, app)
        if (this.stopped) {
          await app.stop()
          throw new DeployFailure('server-stopping', 'the server is shutting down')
        }
      }
      item.drafts.delete(bundle.id)
      const previous = item.running
      item.running = app
      item.activeBundle = bundle.id
      if (previous && previous !== app) await previous.stop()
      log('Activated.')
    } catch (error) {
      const code = error instanceof DeployFailure ? error.errorCode : 'internal'
      log(`Error: ${(error as Error).message}`)
      task.code = 1
      task.error = `Error code: ${code}`
    } finally {
      task.finished = true
    }
  }

  /** POST /v1/oauth/integrations/credentials: RFC 8693 exchange of a content session token (§7.3). */
  private async exchange(form: URLSearchParams, req: IncomingMessage, send: (s: number, b?: unknown) => void) {
    if (!String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded'))
      return send(400, err(3, 'The request body must be form-encoded.'))
    if (
      form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange' ||
      form.get('subject_token_type') !== CONTENT_SESSION_TOKEN
    )
      return send(400, err(3, 'Unsupported grant or subject token type.'))
    const item = [...this.content.values()].find((c) => c.sessionToken === form.get('subject_token'))
    // Code 236 for a session token Connect does not accept, 257 for several associations and no audience: the
    // OpenAPI error enum as we read it (the most likely codes; not confirmed against a server).
    if (!item) return send(401, err(236, 'Invalid content session token.'))
    const audience = form.get('audience')
    const candidates = item.associations.filter((guid) => !audience || guid === audience)
    if (candidates.length === 0) return send(400, err(212, 'No OAuth integration is associated with this content.'))
    if (candidates.length > 1)
      return send(400, err(257, 'Several integrations are associated; choose one with audience.'))
    const integration = this.options.integrations?.[candidates[0]]
    if (!integration) return send(400, err(212, 'The associated integration does not exist.'))
    const requestedTokenType = form.get('requested_token_type') ?? 'urn:ietf:params:oauth:token-type:access_token'
    if (requestedTokenType === AWS_CREDENTIALS && integration.template !== 'aws')
      return send(400, err(3, `Integration ${integration.name} cannot issue AWS credentials.`))
    try {
      const issued = await integration.issue({
        contentGuid: item.guid,
        requestedTokenType,
        scope: form.get('scope') ?? undefined,
      })
      this.exchanges.set(item.guid, (this.exchanges.get(item.guid) ?? 0) + 1)
      return send(200, issued)
    } catch (error) {
      return send(502, err(3, `The integration failed: ${(error as Error).message}`))
    }
  }

  private async pollTask(id: string, url: URL, send: (s: number, b?: unknown) => void) {
    const task = this.tasks.get(id)
    if (!task) return send(404, err(4, 'Task not found.'))
    const first = Number(url.searchParams.get('first') ?? 0)
    const wait = Math.min(Number(url.searchParams.get('wait') ?? 0), 5)
    const deadline = Date.now() + wait * 1000
    while (!task.finished && task.output.length <= first && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100))
    send(200, {
      id,
      output: task.output.slice(first),
      last: task.output.length,
      finished: task.finished,
      code: task.code,
      error: task.error,
      result: null,
    })
  }

  /** /content/<guid>/..., /content/<guid>/_bundle<id>/... (drafts) and vanity paths. */
  private async proxy(req: IncomingMessage, res: ServerResponse, url: URL, user: FakeUser | undefined) {
    let item: Content | undefined
    let rest = ''
    let target: RunningApp | Promise<RunningApp> | undefined
    const byGuid = /^\/content\/([0-9a-f-]{36})(\/_bundle(\d+))?(\/.*)?$/.exec(url.pathname)
    if (byGuid) {
      item = this.content.get(byGuid[1])
      rest = byGuid[4] ?? ''
      target =
        byGuid[3] && item
          ? (this.draftProcess(item, byGuid[3]) ?? (item.activeBundle === byGuid[3] ? item.running : undefined))
          : item?.running
    } else {
      item = [...this.content.values()].find((c) => c.vanity && (url.pathname + '/').startsWith(c.vanity))
      if (item) {
        rest = url.pathname.slice(item.vanity!.length - 1)
        target = item.running
      }
    }
    if (!item) return void (res.writeHead(404), res.end('Not found'))
    if (item.rendered && user && this.canView(user, item) && (rest === '' || rest === '/'))
      return void (
        res.writeHead(200, {'content-type': 'text/html; charset=utf-8'}),
        res.end(readFileSync(join(item.rendered.dir, 'index.html')))
      )
    if (byGuid?.[3] && this.options.draftSubpaths === false && rest !== '' && rest !== '/')
      return void (res.writeHead(404, {'content-type': 'text/plain'}), res.end('Not found'))
    // UNCONFIRMED: the status Connect gives unauthenticated content requests; 401 assumed.
    if (!user)
      return void (
        res.writeHead(401, {'content-type': 'application/json'}),
        res.end(JSON.stringify(err(30, 'Invalid login.')))
      )
    if (!target)
      return void (res.writeHead(503, {'content-type': 'text/plain'}), res.end('The application is not running.'))
    let app: RunningApp
    try {
      app = await target
    } catch (error) {
      // A cold start that failed (killed at init_timeout, or exited): Connect answers with its own error page.
      return void (
        res.writeHead(502, {'content-type': 'text/plain'}),
        res.end(`The application failed to start: ${(error as Error).message}`)
      )
    }
    const stripped = this.options.stripPrefix === false ? url.pathname : rest || '/'
    const headers = {...req.headers}
    delete headers.authorization // UNCONFIRMED whether Connect forwards it; assumed not.
    delete headers['x-rsc-authorization']
    const upstream = httpRequest(
      // A connection per request: a reused idle socket that the host closed meanwhile (gunicorn's keep-alive is 2 s)
      // would fail the request as a 502.
      {host: '127.0.0.1', port: app.port, method: req.method, path: `${stripped}${url.search}`, headers, agent: false},
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', () => (res.headersSent ? res.destroy() : (res.writeHead(502), res.end('Bad gateway'))))
    req.pipe(upstream)
  }
}

/** Content Connect renders (and can schedule) instead of running a process. */
const STATIC_RENDERED = new Set(['quarto-static'])

/** Renders a quarto-static document's Python cells in a Jupyter kernel of its environment (render_qmd.py). */
async function renderDocument(
  app: PreparedApp,
  env: Record<string, string>,
  log: (line: string) => void,
): Promise<{dir: string; email: {scheduled: boolean; subject: string | null}}> {
  const manifest = JSON.parse(readFileSync(join(app.dir, 'manifest.json'), 'utf8')) as {metadata: {entrypoint: string}}
  const output = join(app.dir, '_rendered')
  const script = fileURLToPath(new URL('render_qmd.py', import.meta.url))
  const {code, stderr} = await new Promise<{code: number | null; stderr: string}>((resolve) => {
    const child = spawn(app.python, [script, join(app.dir, manifest.metadata.entrypoint), output], {
      cwd: app.dir,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let text = ''
    child.stderr!.on('data', (chunk: Buffer) => (text = (text + chunk.toString('utf8')).slice(-8000)))
    child.on('close', (exit) => resolve({code: exit, stderr: text}))
  })
  if (code !== 0) {
    stderr.split('\n').filter(Boolean).slice(-20).forEach(log)
    throw new DeployFailure('render-failed', `the document did not render (exit ${code})`)
  }
  return {dir: output, email: JSON.parse(readFileSync(join(output, 'email.json'), 'utf8'))}
}

/** The app mode a bundle's manifest.json declares, read from the uploaded tar.gz (undefined when unreadable). */
function manifestAppMode(file: string): string | undefined {
  let text = ''
  try {
    tar.t({
      file,
      sync: true,
      onReadEntry: (entry) => {
        if (entry.path.replace(/^\.\//, '') === 'manifest.json')
          entry.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')))
        else entry.resume()
      },
    })
    return (JSON.parse(text) as {metadata?: {appmode?: string}}).metadata?.appmode
  } catch {
    return undefined
  }
}

/** Waits until the app's /health answers 200 (its start-up steps are done), for at most four minutes. */
async function untilHealthy(port: number): Promise<void> {
  const deadline = Date.now() + 240_000
  while (Date.now() < deadline) {
    const status = await fetch(`http://127.0.0.1:${port}/health`, {signal: AbortSignal.timeout(2000)})
      .then((answer) => answer.status)
      .catch(() => 0)
    if (status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}
