import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {runCli} from '../support/cli.js'

describe('mlflowctl doctor (no server needed)', () => {
  it('exits 3 with every config check failed and the rest skipped, in one JSON envelope', async () => {
    const {code, json, stderr} = await runCli(['doctor', '--json'], {env: {CONNECT_SERVER: '', CONNECT_API_KEY: ''}})
    assert.equal(code, 3)
    assert.equal(json!.status, 3)
    assert.equal(stderr, '')
    const checks = json!.result.checks as Array<{id: string; status: string; fix?: string}>
    assert.deepEqual(
      checks.filter((c) => c.status === 'fail').map((c) => c.id),
      ['config.server', 'config.api-key', 'config.guid'],
    )
    assert.ok(
      checks.filter((c) => c.status === 'fail').every((c) => c.fix),
      'a fix under every failure',
    )
    assert.ok(checks.every((c) => ['fail', 'skip'].includes(c.status)))
  })

  it('refuses an unknown --only ID (exit 2) and a bad --min-free (exit 2)', async () => {
    const unknown = await runCli(['doctor', '--only', 'connect.nope', '--json'])
    assert.equal(unknown.code, 2)
    assert.equal(unknown.json!.error!.code, 'UNKNOWN_CHECK')
    assert.match(unknown.json!.error!.suggestions[0], /connect\.auth/)
    const size = await runCli(['doctor', '--min-free', 'lots', '--json'])
    assert.equal(size.code, 2)
    assert.equal(size.json!.error!.code, 'INVALID_SIZE')
  })

  it('a refused TCP connection fails connect.tcp and exits 6, naming the host', async () => {
    const {code, json} = await runCli(['doctor', '--guid', 'g', '--json'], {
      env: {CONNECT_SERVER: 'http://127.0.0.1:9', CONNECT_API_KEY: 'some-key-000000'},
    })
    assert.equal(code, 6)
    const tcp = (json!.result.checks as Array<{id: string; status: string; detail: string}>).find(
      (c) => c.id === 'connect.tcp',
    )!
    assert.equal(tcp.status, 'fail')
    assert.match(tcp.detail, /127\.0\.0\.1:9: ECONNREFUSED/)
  })
})
