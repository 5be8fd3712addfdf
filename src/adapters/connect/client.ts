import type {z} from 'zod'

import {redact} from '../../core/redact.js'
import {AuthError, ConfigError, ExternalError, UsageError, type MlflowctlError} from '../../errors.js'
import {HttpTimeoutError, send, type HttpResponse} from './http.js'
import {
  associationsSchema,
  bundlePageSchema,
  bundleSchema,
  connectErrorSchema,
  contentListSchema,
  contentSchema,
  environmentNamesSchema,
  schedulerSettingsSchema,
  serverSettingsSchema,
  scheduleSchema,
  tagListSchema,
  taskRefSchema,
  taskSchema,
  userSchema,
  vanitySchema,
  variantListSchema,
  type ConnectBundle,
  type ConnectContent,
  type ConnectContentListing,
  type ConnectTask,
  type ConnectUser,
} from './schemas.js'

export interface ConnectClientOptions {
  server: string
  apiKey: string
  ca?: string | Buffer
  insecure?: boolean
  timeoutMs?: number
  /** Attempts for idempotent calls (GET, PUT, DELETE, and PATCH of the environment). */
  attempts?: number
  sleep?: (ms: number) => Promise<void>
}

interface CallOptions<S extends z.ZodTypeAny> {
  schema?: S
  body?: unknown
  rawBody?: {data: Buffer; contentType: string}
  query?: Record<string, string | number | undefined>
  idempotent?: boolean
  /** Turns a 404 into this error instead of the generic one. */
  notFound?: () => MlflowctlError
  /** Return the body's bytes (a bundle download) instead of parsing JSON. */
  raw?: boolean
}

const RETRY_STATUSES = new Set([429, 502, 503, 504])
/** Connect's largest page (page_size max 500). */
const BUNDLE_PAGE_SIZE = 500

/**
 * A typed client over the Connect Server API (/__api__/v1/...). Sends `Authorization: Key`, validates
 * every response, retries idempotent calls with backoff, and maps failures to typed errors:
 * 401 → exit 4 (key invalid or expired), 403 → exit 4 (not a collaborator), 404 → the caller's
 * not-found error, 5xx/timeout → exit 5. The API key never appears in an error.
 */
export class ConnectClient {
  readonly server: URL
  private readonly options: Required<Pick<ConnectClientOptions, 'timeoutMs' | 'attempts' | 'sleep'>> &
    ConnectClientOptions
  /** Cookies Connect sets (name -> value). Behind a load balancer they keep task polls on one node;
   * without them polls can reach another node and get spurious 404s. */
  private readonly cookies = new Map<string, string>()

  constructor(options: ConnectClientOptions) {
    let server: URL
    try {
      server = new URL(options.server.endsWith('/') ? options.server : `${options.server}/`)
    } catch {
      throw new ConfigError('SERVER_URL_INVALID', `"${redact(options.server)}" is not a URL.`, {
        suggestions: ['Pass --server https://connect.example.com (or set CONNECT_SERVER).'],
      })
    }
    if (!['http:', 'https:'].includes(server.protocol))
      throw new ConfigError('SERVER_URL_INVALID', `The Connect server URL must be http(s), got ${server.protocol}.`)
    this.server = server
    this.options = {
      timeoutMs: 30_000,
      attempts: 3,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      ...options,
    }
  }

  async call<S extends z.ZodTypeAny>(method: string, path: string, call: CallOptions<S> = {}): Promise<z.infer<S>> {
    const url = new URL(`__api__/${path.replace(/^\//, '')}`, this.server)
    for (const [key, value] of Object.entries(call.query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value))
    const idempotent = call.idempotent ?? ['GET', 'PUT', 'DELETE', 'HEAD'].includes(method)
    const attempts = idempotent ? this.options.attempts : 1
    let lastError: MlflowctlError | undefined
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await this.options.sleep(500 * 2 ** (attempt - 2))
      let response: HttpResponse
      try {
        response = await send({
          method,
          url,
          headers: {
            Authorization: `Key ${this.options.apiKey}`,
            ...(this.cookies.size > 0
              ? {Cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')}
              : {}),
            Accept: 'application/json',
            ...(call.rawBody
              ? {'Content-Type': call.rawBody.contentType}
              : call.body === undefined
                ? {}
                : {'Content-Type': 'application/json'}),
          },
          body: call.rawBody?.data ?? (call.body === undefined ? undefined : JSON.stringify(call.body)),
          timeoutMs: this.options.timeoutMs,
          ca: this.options.ca,
          insecure: this.options.insecure,
        })
      } catch (error) {
        lastError = this.networkError(error as Error, method, url)
        continue
      }
      this.keepCookies(response)
      if (response.status >= 200 && response.status < 300)
        return call.raw ? (response.body as z.infer<S>) : this.parse(response, call.schema, method, url)
      lastError = this.httpError(response, method, url, call.notFound)
      if (!RETRY_STATUSES.has(response.status) && response.status < 500) break
    }
    throw lastError!
  }

  private keepCookies(response: HttpResponse): void {
    const header = response.headers['set-cookie']
    for (const cookie of Array.isArray(header) ? header : header ? [header] : []) {
      const [pair] = cookie.split(';')
      const eq = pair.indexOf('=')
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim())
    }
  }

  private parse<S extends z.ZodTypeAny>(
    response: HttpResponse,
    schema: S | undefined,
    method: string,
    url: URL,
  ): z.infer<S> {
    if (!schema) return undefined as z.infer<S>
    let json: unknown
    try {
      json = response.body.length === 0 ? null : JSON.parse(response.body.toString('utf8'))
    } catch {
      throw this.badResponse(method, url, 'the body is not JSON')
    }
    const parsed = schema.safeParse(json)
    if (!parsed.success)
      throw this.badResponse(
        method,
        url,
        parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
      )
    return parsed.data
  }

  private where(method: string, url: URL): string {
    return `${method} ${url.pathname}`
  }

  private badResponse(method: string, url: URL, why: string): ExternalError {
    return new ExternalError(
      'CONNECT_BAD_RESPONSE',
      `Connect answered ${this.where(method, url)} with an unexpected body (${why}).`,
      {
        suggestions: [
          'Check that --server points at Posit Connect (not a proxy login page) and that it is 2025.10 or newer.',
        ],
      },
    )
  }

  private networkError(error: Error, method: string, url: URL): ExternalError {
    const code = (error as NodeJS.ErrnoException).code ?? ''
    if (error instanceof HttpTimeoutError) {
      return new ExternalError(
        'CONNECT_TIMEOUT',
        `Connect did not answer ${this.where(method, url)} within ${error.timeoutMs / 1000} s.`,
        {suggestions: ['Check the server URL and network, or raise --timeout.']},
      )
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) {
      return new ExternalError('CONNECT_TLS', `TLS verification of ${this.server.host} failed (${code}).`, {
        suggestions: [
          'Pass the internal CA bundle with --ca-certificate FILE (or CONNECT_CA_CERTIFICATE).',
          'Only for testing: --insecure skips verification.',
        ],
      })
    }
    return new ExternalError(
      'CONNECT_UNREACHABLE',
      `Cannot reach Connect at ${this.server.origin} (${code || error.message}).`,
      {suggestions: ['Check --server (or CONNECT_SERVER) and that the host is reachable from here.']},
    )
  }

  private httpError(response: HttpResponse, method: string, url: URL, notFound?: () => MlflowctlError): MlflowctlError {
    let detail = ''
    let connectCode: number | undefined
    try {
      const body = connectErrorSchema.safeParse(JSON.parse(response.body.toString('utf8')))
      connectCode = body.success ? body.data.code : undefined
      if (body.success && body.data.error) detail = ` (Connect error ${body.data.code ?? '?'}: ${body.data.error})`
    } catch {
      // not JSON: a proxy or load balancer answered
    }
    detail = redact(detail, [this.options.apiKey])
    const where = this.where(method, url)
    if (response.status === 401) {
      return new AuthError('CONNECT_UNAUTHORIZED', `Connect rejected the API key: it is invalid or expired${detail}.`, {
        suggestions: ['Create a new API key in Connect (your name > API Keys) and set CONNECT_API_KEY.'],
      })
    }
    // Error 48: "You cannot change the type of application once deployed" (HTTP 403 in Connect's API error
    // table, where it is named AppModeChanged). Not a permission problem: name it for what it is.
    if (connectCode === 48) {
      return new UsageError(
        'APP_MODE_CHANGED',
        `Connect refused ${where}: the content's app mode cannot change once deployed${detail}.`,
        {
          suggestions: [
            "Render the bundle in the content's app mode (mlflowctl version bump DIR --app-mode MODE), or deploy it as new content with --new.",
          ],
        },
      )
    }
    if (response.status === 403) {
      return new AuthError(
        'CONNECT_FORBIDDEN',
        `The API key's user may not do ${where}: not the owner or a collaborator, or the key's role is too low${detail}.`,
        {
          suggestions: [
            'Ask the content owner to add you as a collaborator, or use a publisher (or administrator) key.',
          ],
        },
      )
    }
    if (response.status === 404 && notFound) return notFound()
    if (response.status >= 500)
      return new ExternalError(
        'CONNECT_SERVER_ERROR',
        `Connect failed on ${where} with HTTP ${response.status}${detail}.`,
        {suggestions: ['Retry later; if it persists, check the Connect server logs.']},
      )
    return new ExternalError(
      'CONNECT_REQUEST_FAILED',
      `Connect refused ${where} with HTTP ${response.status}${detail}.`,
    )
  }

  // ---- endpoints ----

  currentUser(): Promise<ConnectUser> {
    return this.call('GET', 'v1/user', {schema: userSchema})
  }

  /** The server version, or undefined when an admin hides it. */
  async serverVersion(): Promise<string | undefined> {
    const settings = await this.call('GET', 'server_settings', {schema: serverSettingsSchema})
    return settings.version || undefined
  }

  getContent(guid: string): Promise<ConnectContent> {
    return this.call('GET', `v1/content/${encodeURIComponent(guid)}`, {
      schema: contentSchema,
      notFound: () =>
        new ConfigError('CONTENT_NOT_FOUND', `Connect has no content with GUID ${guid}.`, {
          suggestions: ['Check --guid, or deploy as new content with --new --name NAME.'],
        }),
    })
  }

  /** Every content item the key's user may see, with its tags and owner (viewers see what they may view). */
  listContent(): Promise<ConnectContentListing[]> {
    return this.call('GET', 'v1/content', {schema: contentListSchema, query: {include: 'tags,owner'}})
  }

  /** The tag of this name (at any level), or undefined. */
  async findTag(name: string): Promise<{id: string; name: string} | undefined> {
    const tags = await this.call('GET', 'v1/tags', {schema: tagListSchema, query: {name}})
    const tag = tags.find((candidate) => candidate.name === name)
    return tag ? {id: String(tag.id), name: tag.name} : undefined
  }

  /** Tags the content (Connect: the owner, a collaborator or an administrator may). */
  async tagContent(guid: string, tagId: string): Promise<void> {
    await this.call('POST', `v1/content/${encodeURIComponent(guid)}/tags`, {body: {tag_id: tagId}, idempotent: true})
  }

  createContent(name: string, title?: string): Promise<ConnectContent> {
    return this.call('POST', 'v1/content', {schema: contentSchema, body: {name, ...(title ? {title} : {})}})
  }

  updateContent(guid: string, patch: Record<string, unknown>): Promise<ConnectContent> {
    return this.call('PATCH', `v1/content/${encodeURIComponent(guid)}`, {
      schema: contentSchema,
      body: patch,
      idempotent: true,
    })
  }

  environmentNames(guid: string): Promise<string[]> {
    return this.call('GET', `v1/content/${encodeURIComponent(guid)}/environment`, {schema: environmentNamesSchema})
  }

  /** Upserts variables; a null value deletes one. Values are never read back (Connect does not return them). */
  async setEnvironment(guid: string, vars: Array<{name: string; value: string | null}>): Promise<void> {
    await this.call('PATCH', `v1/content/${encodeURIComponent(guid)}/environment`, {body: vars, idempotent: true})
  }

  uploadBundle(guid: string, archive: Buffer): Promise<ConnectBundle> {
    return this.call('POST', `v1/content/${encodeURIComponent(guid)}/bundles`, {
      schema: bundleSchema,
      rawBody: {data: archive, contentType: 'application/gzip'},
    })
  }

  /**
   * Every bundle of the content, newest (highest ID) first. v1 answers one bare array in no documented order
   * (posit-sdk and connectapi read it so); a server that pages it ({results, current_page,
   * total}, as the experimental endpoint does) is followed to the end, and one that ignores the page (the same
   * IDs again) ends the walk.
   */
  async listBundles(guid: string): Promise<ConnectBundle[]> {
    const all = new Map<string, ConnectBundle>()
    for (let page = 1; page <= 1000; page++) {
      const answer = await this.call('GET', `v1/content/${encodeURIComponent(guid)}/bundles`, {
        schema: bundlePageSchema,
        query: {page_number: page, page_size: BUNDLE_PAGE_SIZE},
      })
      const rows = Array.isArray(answer) ? answer : answer.results
      const before = all.size
      for (const row of rows) all.set(row.id, row)
      if (Array.isArray(answer)) break // the whole list
      const total = Array.isArray(answer) ? undefined : answer.total
      // A server may cap the page below what was asked, so only an empty page, a page with nothing new or the
      // total ends the walk.
      if (rows.length === 0 || all.size === before || (total !== undefined && all.size >= total)) break
    }
    return [...all.values()].sort((a, b) => Number(b.id) - Number(a.id) || b.id.localeCompare(a.id))
  }

  /** The bundle's tar.gz, as uploaded (GET …/bundles/{id}/download). */
  downloadBundle(guid: string, bundleId: string): Promise<Buffer> {
    return this.call('GET', `v1/content/${encodeURIComponent(guid)}/bundles/${encodeURIComponent(bundleId)}/download`, {
      raw: true,
      notFound: () => new ConfigError('BUNDLE_NOT_FOUND', `Content ${guid} has no bundle ${bundleId}.`),
    })
  }

  /** `activate: false` deploys a draft (Connect ≥ 2025.06.0; older servers reject the field). */
  async deploy(guid: string, bundleId: string, activate = true): Promise<string> {
    const ref = await this.call('POST', `v1/content/${encodeURIComponent(guid)}/deploy`, {
      schema: taskRefSchema,
      body: {bundle_id: bundleId, ...(activate ? {} : {activate: false})},
    })
    return ref.task_id
  }

  getTask(taskId: string, first: number, waitSeconds: number): Promise<ConnectTask> {
    return this.call('GET', `v1/tasks/${encodeURIComponent(taskId)}`, {
      schema: taskSchema,
      query: {first, wait: waitSeconds},
    })
  }

  /**
   * The server's default start limit for content of an app mode (`init_timeout` of
   * GET /__api__/server_settings/scheduler/{app_mode}, as Publisher reads it); undefined when the server does not say.
   */
  async defaultInitTimeout(appMode: string): Promise<number | undefined> {
    const settings = await this.call('GET', `server_settings/scheduler/${encodeURIComponent(appMode)}`, {
      schema: schedulerSettingsSchema,
    })
    return settings.init_timeout ?? undefined
  }

  async setVanity(guid: string, path: string): Promise<string> {
    const vanity = await this.call('PUT', `v1/content/${encodeURIComponent(guid)}/vanity`, {
      schema: vanitySchema,
      body: {path, force: false},
    })
    return vanity.path
  }

  /** GUIDs of the OAuth integrations associated with the content. */
  async oauthIntegrations(guid: string): Promise<string[]> {
    const rows = await this.call('GET', `v1/content/${encodeURIComponent(guid)}/oauth/integrations/associations`, {
      schema: associationsSchema,
    })
    return rows.map((row) => row.oauth_integration_guid)
  }

  /** The content's vanity path, or undefined when it has none (Connect answers 404). */
  async vanity(guid: string): Promise<string | undefined> {
    const none = new ConfigError('NO_VANITY', 'no vanity URL')
    try {
      return (
        await this.call('GET', `v1/content/${encodeURIComponent(guid)}/vanity`, {
          schema: vanitySchema,
          notFound: () => none,
        })
      ).path
    } catch (error) {
      if (error === none) return undefined
      throw error
    }
  }

  /**
   * The default variant of rendered content (GET applications/{guid}/variants: Connect's unversioned, experimental
   * API, the one Posit's own clients schedule through); undefined when it has none yet.
   */
  async defaultVariant(guid: string): Promise<{id: number; appId: number} | undefined> {
    const variants = await this.call('GET', `applications/${encodeURIComponent(guid)}/variants`, {
      schema: variantListSchema,
    })
    const variant = variants.find((candidate) => candidate.is_default) ?? variants[0]
    return variant && {id: variant.id, appId: variant.app_id}
  }

  /** The variant's render schedule (a variant has at most one), or undefined. */
  async variantSchedule(variantId: number): Promise<Record<string, unknown> | undefined> {
    const schedules = await this.call('GET', `variants/${variantId}/schedules`, {schema: scheduleSchema.array()})
    return schedules[0]
  }

  /**
   * Creates a schedule, or replaces an existing one whole (the update endpoint resets omitted fields, so the caller
   * sends the complete record).
   */
  setSchedule(record: Record<string, unknown>, existingId?: number): Promise<Record<string, unknown>> {
    return this.call('POST', existingId === undefined ? 'schedules' : `schedules/${existingId}`, {
      schema: scheduleSchema,
      body: record,
      idempotent: existingId !== undefined,
    })
  }

  /** Replaces the content's OAuth integration associations (an empty list removes all). */
  async setOAuthIntegrations(guid: string, integrationGuids: string[]): Promise<void> {
    await this.call('PUT', `v1/content/${encodeURIComponent(guid)}/oauth/integrations/associations`, {
      body: integrationGuids.map((id) => ({oauth_integration_guid: id})),
    })
  }
}
