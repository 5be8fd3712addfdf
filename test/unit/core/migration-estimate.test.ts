// upgrade plan's migration time: heavy operations times the measured seconds per row, plus a constant per revision
// and once per run; what was not measured is named, and so is a dialect the numbers were not measured on.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {estimateMigration, formatDuration, type MigrationCosts} from '../../../src/core/migration-estimate.js'

const costs: MigrationCosts = {
  measuredAt: '2026-12-07',
  machine: '2 cores',
  sqlite: {fixedSeconds: 3, perMigrationSeconds: 0.05, perRowSeconds: {index: 1e-6}},
}
const revisionCosts = {
  _about: 'ignored',
  a5b4c3d2e1f0: [{op: 'index' as const, table: 'metrics'}],
  '451aebb31d03': [{op: 'rebuild' as const, table: 'metrics'}],
}

describe('migration estimate', () => {
  it('adds the fixed cost, a constant per revision and rows times the cost of each heavy operation', () => {
    const estimate = estimateMigration(['aaa', 'a5b4c3d2e1f0'], revisionCosts, costs, {metrics: 10_000_000}, 'sqlite')
    assert.ok(Math.abs(estimate.seconds - (3 + 2 * 0.05 + 10)) < 1e-9, String(estimate.seconds))
    assert.deepEqual(estimate.heaviest[0], {
      revision: 'a5b4c3d2e1f0',
      op: 'index',
      table: 'metrics',
      rows: 10_000_000,
      seconds: 10,
    })
    assert.equal(estimate.measured, true)
    assert.doesNotMatch(estimate.basis, /not measured/)
  })

  it('names operations and dialects it has no measurement for', () => {
    const estimate = estimateMigration(['451aebb31d03'], revisionCosts, costs, {metrics: 1000}, 'postgresql')
    assert.equal(estimate.measured, false)
    assert.match(estimate.basis, /measured on SQLite, not on postgresql/)
    assert.match(estimate.basis, /rebuild operations not measured, counted as nothing/)
  })

  it('formats durations for people', () => {
    assert.deepEqual([0.4, 42.4, 600].map(formatDuration), ['under a second', 'about 42 s', 'about 10 min'])
  })
})
