// The gc stream as the CLI reads it (adapters/storage/ops-site.ts readGcEvents): each line checked against the
// contract, a stream cut before its result or ended by the extension's error line is a typed failure.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {readGcEvents} from '../../../src/adapters/storage/ops-site.js'
import type {GcEvent} from '../../../src/core/extension-contract.js'

const zero = {count: 0, bytes: 0, files: 0}
const kinds = {runs: zero, loggedModels: zero, traces: zero, experiments: zero, modelVersionFiles: zero, orphans: zero}
const deleted = Object.fromEntries(Object.keys(kinds).map((kind) => [kind, {count: 0, files: 0}]))
const plan = JSON.stringify({event: 'plan', dryRun: false, kinds, kept: []})
const progress = JSON.stringify({event: 'progress', kind: 'runs', done: 25, of: 100})
const result = JSON.stringify({
  event: 'result',
  dryRun: false,
  kinds,
  deleted,
  bytesFreed: 0,
  kept: 0,
  seconds: 1,
  longestTransactionSeconds: 0.01,
})

async function* lines(...items: Array<string | Error>) {
  for (const item of items) {
    if (item instanceof Error) throw item
    yield item
  }
}

describe('gc events', () => {
  it('hands every event on and returns the result', async () => {
    const seen: GcEvent[] = []
    const got = await readGcEvents(lines(plan, '', progress, result), (event) => seen.push(event), 'connect:x')
    assert.equal(got.event, 'result')
    assert.deepEqual(
      seen.map((event) => event.event),
      ['plan', 'progress', 'result'],
    )
  })

  it('a stream that stops before the result, breaks, or ends with an error line is GC_FAILED', async () => {
    const noop = () => undefined
    await assert.rejects(readGcEvents(lines(plan, progress), noop, 'connect:x'), {code: 'GC_FAILED'})
    await assert.rejects(readGcEvents(lines(plan, new Error('socket hang up')), noop, 'connect:x'), {
      code: 'GC_FAILED',
      message: /cut off: socket hang up/,
    })
    await assert.rejects(
      readGcEvents(lines(plan, JSON.stringify({event: 'error', message: 'OperationalError: disk I/O'})), noop, 'x'),
      {code: 'GC_FAILED', message: /stopped: OperationalError: disk I\/O/},
    )
  })

  it('a line that is not the contract is refused, not guessed at', async () => {
    await assert.rejects(
      readGcEvents(
        lines(JSON.stringify({event: 'progress', kind: 'everything', done: 1, of: 1})),
        () => undefined,
        'x',
      ),
      {code: 'EXTENSION_ANSWER_INVALID'},
    )
  })
})
