import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {commandLineSecrets, secretFlagWarnings} from '../../../src/output/debug-guard.js'

describe('commandLineSecrets', () => {
  it('finds secret flag values, URL passwords, secret -E values and secret environment variables', () => {
    const secrets = commandLineSecrets(
      [
        '--api-key',
        'key-1234',
        '--to=postgresql://u:p%40ss@h/db',
        '-E',
        'DB_PASSWORD=hunter22',
        '-E',
        'REGION=eu-west-1',
      ],
      {MLFLOWCTL_OPS_TOKEN: 'ops-token-99', HOME: '/root'},
    )
    assert.deepEqual(secrets.sort(), ['hunter22', 'key-1234', 'ops-token-99', 'p%40ss', 'p@ss'].sort())
  })
})

describe('secretFlagWarnings', () => {
  it('names the flag and the way to pass it instead', () => {
    const warnings = secretFlagWarnings([
      '--source',
      'postgresql://u:pw12@h/db',
      '-E',
      'MY_TOKEN=abcd1234',
      '--repo',
      's3://b/p',
    ])
    assert.equal(warnings.length, 2)
    assert.match(warnings[0], /^--source carries a password.*MLFLOWCTL_SOURCE.*PGPASSWORD/)
    assert.match(warnings[1], /^-E MY_TOKEN=… .*pass -E MY_TOKEN to copy it/)
    assert.ok(!warnings.join().includes('pw12') && !warnings.join().includes('abcd1234'))
  })
})
