import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {after, describe, it} from 'node:test'

import {ConnectClient} from '../../../../src/adapters/connect/client.js'
import {ExitCode, MlflowctlError} from '../../../../src/errors.js'
import {tempDir} from '../../../support/cli.js'

const KEY = 'test-api-key-0123456789abcdef'
type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void
const servers: Server[] = []
after(() => servers.forEach((s) => s.close()))

async function serve(
  handler: Handler,
  server: Server = createServer(),
): Promise<{url: string; calls: Array<{method: string; url: string; auth?: string; body: string}>}> {
  const calls: Array<{method: string; url: string; auth?: string; body: string}> = []
  server.on('request', (req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      calls.push({method: req.method!, url: req.url!, auth: req.headers.authorization, body})
      handler(req, res, body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  const scheme = 'setSecureContext' in server ? 'https' : 'http'
  return {url: `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`, calls}
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, {'content-type': 'application/json'})
  res.end(JSON.stringify(body))
}
const noSleep = async () => {}
const client = (url: string, extra = {}) => new ConnectClient({server: url, apiKey: KEY, sleep: noSleep, ...extra})

async function rejectsWith(promise: Promise<unknown>, code: string, exit: ExitCode): Promise<MlflowctlError> {
  let caught: unknown
  await promise.catch((error) => (caught = error))
  assert.ok(caught instanceof MlflowctlError, `expected an MlflowctlError, got ${caught}`)
  assert.equal(caught.code, code)
  assert.equal(caught.exit, exit)
  assert.ok(
    !caught.message.includes(KEY) && !caught.suggestionList.join(' ').includes(KEY),
    'the key leaked into the error',
  )
  return caught
}

describe('ConnectClient', () => {
  it('sends the key as "Authorization: Key", under /__api__/, and validates the answer', async () => {
    const {url, calls} = await serve((_req, res) =>
      json(res, 200, {guid: 'u1', username: 'ana', user_role: 'publisher', locked: false, extra: 1}),
    )
    const user = await client(`${url}/`).currentUser()
    assert.equal(user.username, 'ana')
    assert.deepEqual(
      calls.map((c) => [c.method, c.url, c.auth]),
      [['GET', '/__api__/v1/user', `Key ${KEY}`]],
    )
  })

  it('keeps the cookies Connect sets and sends them back (sticky sessions behind a load balancer)', async () => {
    const cookies: Array<string | undefined> = []
    const {url} = await serve((req, res) => {
      cookies.push(req.headers.cookie)
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': ['AWSALB=node-2; Path=/; HttpOnly', 'other=1'],
      })
      res.end(JSON.stringify({version: '2025.10.0'}))
    })
    const connect = client(url)
    await connect.serverVersion()
    await connect.serverVersion()
    assert.deepEqual(cookies, [undefined, 'AWSALB=node-2; other=1'])
  })

  it('maps 401 to exit 4 "invalid or expired" and 403 to exit 4 "not a collaborator"', async () => {
    const {url} = await serve((req, res) =>
      req.url!.includes('user')
        ? json(res, 401, {code: 30, error: 'Invalid login.', payload: null})
        : json(res, 403, {code: 22, error: 'forbidden', payload: null}),
    )
    const unauthorized = await rejectsWith(client(url).currentUser(), 'CONNECT_UNAUTHORIZED', ExitCode.Auth)
    assert.match(unauthorized.message, /invalid or expired.*Invalid login/)
    const forbidden = await rejectsWith(client(url).getContent('g1'), 'CONNECT_FORBIDDEN', ExitCode.Auth)
    assert.match(forbidden.message, /collaborator/)
  })

  it('maps 404 on a content GUID to a clear not-found error (exit 3)', async () => {
    const {url} = await serve((_req, res) => json(res, 404, {code: 4, error: 'not found', payload: null}))
    const error = await rejectsWith(client(url).getContent('0000-guid'), 'CONTENT_NOT_FOUND', ExitCode.Config)
    assert.match(error.message, /0000-guid/)
  })

  it('retries idempotent calls on 503 and succeeds, but never retries a POST', async () => {
    let gets = 0
    const {url, calls} = await serve((req, res) => {
      if (req.method === 'GET') return ++gets < 3 ? json(res, 503, {}) : json(res, 200, {version: '2025.10.0'})
      json(res, 500, {code: 1, error: 'boom', payload: null})
    })
    assert.equal(await client(url).serverVersion(), '2025.10.0')
    assert.equal(gets, 3)
    await rejectsWith(client(url).createContent('mlflow'), 'CONNECT_SERVER_ERROR', ExitCode.External)
    assert.equal(calls.filter((c) => c.method === 'POST').length, 1)
  })

  it('gives up after the configured attempts with exit 5', async () => {
    const {url, calls} = await serve((_req, res) => json(res, 502, {}))
    await rejectsWith(client(url, {attempts: 2}).currentUser(), 'CONNECT_SERVER_ERROR', ExitCode.External)
    assert.equal(calls.length, 2)
  })

  it('turns a malformed or mis-shaped answer into a clear error instead of a crash', async () => {
    const {url} = await serve((req, res) => {
      if (req.url!.includes('user')) {
        res.writeHead(200, {'content-type': 'text/html'})
        return res.end('<html>login</html>')
      }
      json(res, 200, {guid: 42})
    })
    await rejectsWith(client(url).currentUser(), 'CONNECT_BAD_RESPONSE', ExitCode.External)
    const shaped = await rejectsWith(client(url).getContent('g'), 'CONNECT_BAD_RESPONSE', ExitCode.External)
    assert.match(shaped.message, /guid/)
  })

  it('treats a hidden server version as unknown', async () => {
    const {url} = await serve((_req, res) => json(res, 200, {hostname: 'connect'}))
    assert.equal(await client(url).serverVersion(), undefined)
  })

  it('bounds a request that never gets an answer by its timeout', async () => {
    const {url} = await serve(() => {})
    await rejectsWith(client(url, {timeoutMs: 150, attempts: 1}).currentUser(), 'CONNECT_TIMEOUT', ExitCode.External)
  })

  it('reports an unreachable server and a bad URL', async () => {
    const {url} = await serve(() => {})
    const port = Number(new URL(url).port)
    servers.at(-1)!.close()
    await rejectsWith(
      client(`http://127.0.0.1:${port}`, {attempts: 1}).currentUser(),
      'CONNECT_UNREACHABLE',
      ExitCode.External,
    )
    assert.throws(
      () => new ConnectClient({server: 'not a url', apiKey: KEY}),
      (e: unknown) => e instanceof MlflowctlError && e.exit === ExitCode.Config,
    )
  })

  it('verifies TLS: a self-signed server fails with a CA hint, works with --ca-certificate or --insecure', async () => {
    const dir = tempDir('tls-')
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      {stdio: 'ignore'},
    )
    const cert = readFileSync(join(dir, 'cert.pem'))
    const server = createHttpsServer({key: readFileSync(join(dir, 'key.pem')), cert})
    const {url} = await serve((_req, res) => json(res, 200, {version: '2026.01.0'}), server)
    const error = await rejectsWith(client(url, {attempts: 1}).serverVersion(), 'CONNECT_TLS', ExitCode.External)
    assert.match(error.suggestionList.join(' '), /--ca-certificate/)
    assert.equal(await client(url, {ca: cert}).serverVersion(), '2026.01.0')
    assert.equal(await client(url, {insecure: true}).serverVersion(), '2026.01.0')
  })

  it('sends bundles as application/gzip and env vars as a JSON array, null deleting', async () => {
    const seen: Array<{type?: string; body: string}> = []
    const {url} = await serve((req, res, body) => {
      seen.push({type: req.headers['content-type'], body})
      if (req.url!.endsWith('/bundles')) return json(res, 200, {id: '7', content_guid: 'g'})
      res.writeHead(204)
      res.end()
    })
    const bundle = await client(url).uploadBundle('g', Buffer.from('tgz'))
    assert.equal(bundle.id, '7')
    await client(url).setEnvironment('g', [
      {name: 'A', value: '1'},
      {name: 'B', value: null},
    ])
    assert.deepEqual(
      seen.map((s) => s.type),
      ['application/gzip', 'application/json'],
    )
    assert.deepEqual(JSON.parse(seen[1].body), [
      {name: 'A', value: '1'},
      {name: 'B', value: null},
    ])
  })
})

describe('ConnectClient: bundle lists and app modes', () => {
  const bundles = Array.from({length: 7}, (_, i) => ({id: String(100 + i), content_guid: 'g', active: i === 6}))

  it('pages a paged bundle list to the end, whatever page size the server allows', async () => {
    const {url, calls} = await serve((req, res) => {
      const query = new URL(req.url!, 'http://x').searchParams
      const size = Math.min(Number(query.get('page_size')), 3) // a server whose largest page is 3
      const page = Number(query.get('page_number'))
      const newestFirst = [...bundles].reverse()
      json(res, 200, {
        results: newestFirst.slice((page - 1) * size, page * size),
        current_page: page,
        total: bundles.length,
      })
    })
    const listed = await client(url).listBundles('g')
    assert.deepEqual(
      listed.map((b) => b.id).sort(),
      bundles.map((b) => b.id),
    )
    assert.deepEqual(
      calls.map((call) => new URL(call.url, 'http://x').searchParams.get('page_number')),
      ['1', '2', '3'],
    )
  })

  it('takes a bare array (older servers ignore the page) and stops when a page brings nothing new', async () => {
    const {url, calls} = await serve((_req, res) => json(res, 200, bundles))
    assert.equal((await client(url).listBundles('g')).length, 7)
    assert.ok(calls.length <= 2, `at most one extra request, got ${calls.length}`)
  })

  it('Connect error 48 (an app-mode change, HTTP 403) is APP_MODE_CHANGED (exit 2), not a permission problem', async () => {
    const {url} = await serve((_req, res) =>
      json(res, 403, {code: 48, error: 'You cannot change the type of application once deployed.', payload: null}),
    )
    const error = await rejectsWith(client(url).deploy('g', '101'), 'APP_MODE_CHANGED', ExitCode.Usage)
    assert.match(error.message, /app mode cannot change once deployed/)
  })

  it('accepts 202 Accepted for a deploy, as Connect answers it', async () => {
    const {url} = await serve((_req, res) => json(res, 202, {task_id: 't-1'}))
    assert.equal(await client(url).deploy('g', '101'), 't-1')
  })
})
