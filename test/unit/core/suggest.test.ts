import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {closestMatch, editDistance} from '../../../src/core/suggest.js'

describe('suggestions', () => {
  it('edit distance counts insertions, deletions and substitutions', () => {
    assert.equal(editDistance('bakup list', 'backup list'), 1)
    assert.equal(editDistance('backup lst', 'backup list'), 1)
    assert.equal(editDistance('', 'abc'), 3)
    assert.equal(editDistance('kitten', 'sitting'), 3)
  })

  it('offers the closest candidate only when it is close', () => {
    const commands = ['backup list', 'backup create', 'deploy', 'doctor']
    assert.equal(closestMatch('bakup list', commands), 'backup list')
    assert.equal(closestMatch('docter', commands), 'doctor')
    assert.equal(closestMatch('zzzzzzzz', commands), undefined)
  })
})
