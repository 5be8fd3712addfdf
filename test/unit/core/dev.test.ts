import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {waitUntilSettled, type DevDeps} from '../../../src/core/dev.js'

describe('dev up: waiting for the extension', () => {
  it('reports each phase once, however many polls it takes (one line each outside a terminal)', async () => {
    const phases = ['starting', 'starting', 'starting', 'starting', 'starting', 'ready']
    let clock = 0
    const deps = {
      state: async () => ({supervisorPid: 42, phase: phases.shift() ?? 'ready'}),
      isAlive: () => true,
      now: () => clock,
      sleep: async () => void (clock += 250),
    } as unknown as DevDeps
    const reports: string[] = []
    const state = await waitUntilSettled(deps, {root: '/b'} as never, 42, 60_000, (line) => reports.push(line))
    assert.equal(state.phase, 'ready')
    assert.deepEqual(reports, ['waiting for /health'])
  })
})
