import {timingSafeEqual} from 'node:crypto'
import {createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse} from 'node:http'

/** What the dev proxy needs to know; mirrors how Connect fronts one content item. */
export interface AuthProxyOptions {
  guid: string
  apiKey: string
  upstreamPort: number
}

export const LOGIN_PATH = '/__login__'
const COOKIE = 'mlflowctl_dev'
const INVALID_LOGIN = JSON.stringify({code: 30, error: 'Invalid login.', payload: null})

function sameSecret(presented: string | undefined, expected: string): boolean {
  if (!presented) return false
  const a = Buffer.from(presented)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * The credential a request carries: `Authorization: Key <key>` (Connect's scheme), `Bearer <key>`
 * (what the MLflow client sends from MLFLOW_TRACKING_TOKEN), `X-RSC-Authorization: Key <key>`, or the
 * cookie that /__login__ sets for browsers.
 */
export function presentedKey(headers: IncomingMessage['headers']): string | undefined {
  const auth = headers.authorization ?? ''
  const scheme = /^(Key|Bearer)\s+(\S+)$/i.exec(auth)
  if (scheme) return scheme[2]
  const rsc = /^Key\s+(\S+)$/i.exec(String(headers['x-rsc-authorization'] ?? ''))
  if (rsc) return rsc[1]
  const cookie = String(headers.cookie ?? '')
    .split(/;\s*/)
    .find((part) => part.startsWith(`${COOKIE}=`))
  return cookie ? decodeURIComponent(cookie.slice(COOKIE.length + 1)) : undefined
}

function reply(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers})
  res.end(body)
}

/**
 * A loopback proxy that serves one extension at /content/<guid>/ the way Connect does: it requires the
 * key, strips the prefix (whether Connect itself forwards it is not documented; the extension copes with both)
 * and never forwards the key to the app.
 */
export function createAuthProxy(options: AuthProxyOptions): Server {
  const prefix = `/content/${options.guid}`
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname === LOGIN_PATH) {
      if (!sameSecret(url.searchParams.get('key') ?? undefined, options.apiKey)) return reply(res, 401, INVALID_LOGIN)
      res.writeHead(302, {
        location: `${prefix}/`,
        'set-cookie': `${COOKIE}=${encodeURIComponent(options.apiKey)}; HttpOnly; SameSite=Strict; Path=/`,
      })
      return res.end()
    }
    if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) {
      return reply(
        res,
        404,
        JSON.stringify({code: 4, error: `Not found. This dev server serves only ${prefix}/.`, payload: null}),
      )
    }
    if (!sameSecret(presentedKey(req.headers), options.apiKey)) return reply(res, 401, INVALID_LOGIN)
    if (url.pathname === prefix) {
      res.writeHead(301, {location: `${prefix}/${url.search}`})
      return res.end()
    }
    forward(req, res, options.upstreamPort, req.url!.slice(prefix.length))
  })
}

function forward(req: IncomingMessage, res: ServerResponse, port: number, path: string): void {
  const headers = {...req.headers}
  delete headers.authorization
  delete headers['x-rsc-authorization']
  delete headers.cookie
  headers['rstudio-connect-credentials'] = JSON.stringify({user: 'mlflowctl-dev', groups: []})
  const upstream = httpRequest({host: '127.0.0.1', port, method: req.method, path, headers}, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(res)
  })
  upstream.on('error', () => {
    if (!res.headersSent)
      reply(res, 502, JSON.stringify({code: 502, error: 'The MLflow process is not answering.', payload: null}))
    else res.destroy()
  })
  req.pipe(upstream)
}
