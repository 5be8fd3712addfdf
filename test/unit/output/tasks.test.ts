import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {chooseRenderer} from '../../../src/output/tasks.js'
import {painter, useColor} from '../../../src/output/color.js'
import {keyValues, table} from '../../../src/output/table.js'

describe('renderer policy', () => {
  const base = {json: false, verbose: false, stderrIsTTY: true, env: {}}
  it('is silent under --json, even on a TTY', () => assert.equal(chooseRenderer({...base, json: true}), 'silent'))
  it('is simple in CI, off a TTY or with TERM=dumb', () => {
    assert.equal(chooseRenderer({...base, env: {CI: 'true'}}), 'simple')
    assert.equal(chooseRenderer({...base, stderrIsTTY: false}), 'simple')
    assert.equal(chooseRenderer({...base, env: {TERM: 'dumb'}}), 'simple')
  })
  it('is verbose off a TTY with --verbose', () =>
    assert.equal(chooseRenderer({...base, stderrIsTTY: false, verbose: true}), 'verbose'))
  it('is the default renderer on a TTY', () => assert.equal(chooseRenderer(base), 'default'))
})

describe('colour', () => {
  it('is off for --no-color, NO_COLOR, TERM=dumb or a pipe; FORCE_COLOR turns it on', () => {
    assert.equal(useColor({noColorFlag: true, env: {}, isTTY: true}), false)
    assert.equal(useColor({noColorFlag: false, env: {NO_COLOR: ''}, isTTY: true}), false)
    assert.equal(useColor({noColorFlag: false, env: {TERM: 'dumb'}, isTTY: true}), false)
    assert.equal(useColor({noColorFlag: false, env: {}, isTTY: false}), false)
    assert.equal(useColor({noColorFlag: false, env: {FORCE_COLOR: '1'}, isTTY: false}), true)
    assert.equal(painter(false).fail('x'), 'x')
    assert.notEqual(painter(true).fail('x'), 'x')
  })
})

describe('tables', () => {
  it('aligns columns without borders', () => {
    assert.equal(
      table(
        ['A', 'LONGER'],
        [
          ['xyz', '1'],
          ['q', '22'],
        ],
      ),
      'A    LONGER\nxyz  1\nq    22',
    )
    assert.equal(
      keyValues([
        ['a', '1'],
        ['bbb', '2'],
      ]),
      'a:   1\nbbb: 2',
    )
  })
})
