import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {asJsonLogLine} from '../../../src/adapters/dev/log-lines.js'

const now = new Date('2026-12-04T08:00:00.123Z')

describe('asJsonLogLine', () => {
  it('passes a JSON line of the extension through', () => {
    const line = '{"ts": "2026-12-04T08:00:00Z", "level": "info", "logger": "mlflowctl", "msg": "ready"}'
    assert.equal(asJsonLogLine(line, 'stderr', now, []), line)
  })

  it("wraps the servers' plain lines, keeping their level", () => {
    assert.deepEqual(JSON.parse(asJsonLogLine('INFO:     Started server process [42]', 'stderr', now, [])), {
      ts: '2026-12-04T08:00:00Z',
      level: 'info',
      logger: 'server.stderr',
      msg: 'INFO:     Started server process [42]',
    })
    const gunicorn = '[2026-12-04 08:00:00 +0000] [42] [ERROR] Worker (pid:43) was sent SIGKILL'
    assert.equal(JSON.parse(asJsonLogLine(gunicorn, 'stderr', now, [])).level, 'error')
    assert.equal(
      JSON.parse(asJsonLogLine('Traceback (most recent call last):', 'stdout', now, [])).logger,
      'server.stdout',
    )
  })

  it('masks secrets in wrapped and passed-through lines alike', () => {
    const wrapped = asJsonLogLine('connecting to postgresql://u:hunter22@db/x with key dev-key-0123', 'stderr', now, [
      'dev-key-0123',
    ])
    assert.ok(!wrapped.includes('hunter22') && !wrapped.includes('dev-key-0123'), wrapped)
    const passed = asJsonLogLine('{"msg": "token dev-key-0123"}', 'stderr', now, ['dev-key-0123'])
    assert.ok(!passed.includes('dev-key-0123'), passed)
  })
})
