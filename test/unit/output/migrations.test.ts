import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {formatCost} from '../../../src/output/migrations.js'

describe('formatCost', () => {
  it('says nothing without heavy steps', () => {
    assert.deepEqual(formatCost({heavySteps: 0, rowsTouched: 10, tables: {metrics: 10}}), [])
  })

  it('names the tables and their estimated rows', () => {
    assert.deepEqual(
      formatCost({heavySteps: 2, rowsTouched: 1_250_000, tables: {metrics: 1_200_000, params: 50_000}}),
      ['Cost: 2 heavy steps over ≈1,250,000 rows (metrics 1,200,000, params 50,000).'],
    )
  })

  it('does not claim "≈0 rows" when the database has no statistics', () => {
    const [line] = formatCost({heavySteps: 1, rowsTouched: 0, tables: {}})
    assert.match(line, /^Cost: 1 heavy steps; the tables they touch have no statistics/)
    assert.doesNotMatch(line, /≈0 rows|\(\)/)
  })
})
