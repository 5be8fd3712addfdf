import assert from 'node:assert/strict'
import {createServer, type IncomingHttpHeaders, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {after, before, describe, it} from 'node:test'

import {createAuthProxy} from '../../../src/adapters/dev/auth-proxy.js'

const GUID = '11111111-2222-3333-4444-555555555555'
const KEY = 'dev-key-0123456789abcdef'
let upstream: Server
let proxy: Server
let base: string
const seen: Array<{url: string; headers: IncomingHttpHeaders}> = []

const listen = (server: Server) =>
  new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))

before(async () => {
  upstream = createServer((req, res) => {
    seen.push({url: req.url!, headers: req.headers})
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      res.writeHead(200, {'content-type': 'application/json'})
      res.end(JSON.stringify({path: req.url, method: req.method, body}))
    })
  })
  proxy = createAuthProxy({guid: GUID, apiKey: KEY, upstreamPort: await listen(upstream)})
  base = `http://127.0.0.1:${await listen(proxy)}`
})
after(() => {
  proxy.close()
  upstream.close()
})

describe('dev auth proxy', () => {
  for (const [label, headers] of [
    ['Authorization: Key', {Authorization: `Key ${KEY}`}],
    ['Authorization: Bearer (MLflow client)', {Authorization: `Bearer ${KEY}`}],
    ['X-RSC-Authorization: Key', {'X-RSC-Authorization': `Key ${KEY}`}],
  ] as const) {
    it(`accepts ${label}, strips the prefix and does not forward the key`, async () => {
      const response = await fetch(`${base}/content/${GUID}/api/2.0/mlflow/runs/create`, {
        method: 'POST',
        headers,
        body: '{"a":1}',
      })
      assert.equal(response.status, 200)
      const echoed = (await response.json()) as {path: string; method: string; body: string}
      assert.deepEqual(echoed, {path: '/api/2.0/mlflow/runs/create', method: 'POST', body: '{"a":1}'})
      const last = seen.at(-1)!
      assert.equal(last.headers.authorization, undefined)
      assert.equal(last.headers['x-rsc-authorization'], undefined)
      assert.ok(!JSON.stringify(last.headers).includes(KEY))
    })
  }

  it('answers 401 with a Connect-style body for a missing or wrong key', async () => {
    const before = seen.length
    for (const headers of [{}, {Authorization: 'Key wrong-key-000000000000'}, {Authorization: `Basic ${KEY}`}] as Array<
      Record<string, string>
    >) {
      const response = await fetch(`${base}/content/${GUID}/health`, {headers})
      assert.equal(response.status, 401)
      assert.deepEqual(await response.json(), {code: 30, error: 'Invalid login.', payload: null})
    }
    assert.equal(seen.length, before, 'nothing reached the app')
  })

  it('serves only its own content GUID, and redirects the bare prefix to the trailing slash', async () => {
    assert.equal(
      (
        await fetch(`${base}/content/99999999-2222-3333-4444-555555555555/health`, {
          headers: {Authorization: `Key ${KEY}`},
        })
      ).status,
      404,
    )
    const bare = await fetch(`${base}/content/${GUID}`, {headers: {Authorization: `Key ${KEY}`}, redirect: 'manual'})
    assert.equal(bare.status, 301)
    assert.equal(bare.headers.get('location'), `/content/${GUID}/`)
  })

  it('logs a browser in with a cookie', async () => {
    assert.equal((await fetch(`${base}/__login__?key=nope`, {redirect: 'manual'})).status, 401)
    const login = await fetch(`${base}/__login__?key=${KEY}`, {redirect: 'manual'})
    assert.equal(login.status, 302)
    const cookie = login.headers.get('set-cookie')!.split(';')[0]
    assert.equal((await fetch(`${base}/content/${GUID}/`, {headers: {cookie}})).status, 200)
    assert.equal(seen.at(-1)!.headers.cookie, undefined)
  })
})
