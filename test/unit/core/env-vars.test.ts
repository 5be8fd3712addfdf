import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {parseEnvVars, secretValuesOf} from '../../../src/core/env-vars.js'
import {UsageError} from '../../../src/errors.js'

describe('parseEnvVars', () => {
  it('reads NAME=VALUE and copies NAME from the environment; the last one wins', () => {
    const vars = parseEnvVars(['A=1', 'B', 'URL=postgresql://u:p@h/db?x=a=b', 'A=2'], {B: 'from-env'})
    assert.deepEqual(vars, [
      {name: 'A', value: '2'},
      {name: 'B', value: 'from-env'},
      {name: 'URL', value: 'postgresql://u:p@h/db?x=a=b'},
    ])
  })

  it('names the variable, never a value, when it fails', () => {
    assert.throws(
      () => parseEnvVars(['MISSING'], {}),
      (e: unknown) => e instanceof UsageError && e.code === 'ENV_VAR_NOT_SET' && /MISSING/.test(e.message),
    )
    assert.throws(
      () => parseEnvVars(['1BAD=secret-value'], {}),
      (e: unknown) => e instanceof UsageError && !/secret-value/.test(e.message),
    )
  })

  it('collects secret-looking values and URL passwords for redaction', () => {
    const secrets = secretValuesOf([
      {name: 'DB_PASSWORD', value: 'pw-1'},
      {name: 'MLFLOW_BACKEND_STORE_URI', value: 'postgresql://u:p%40ss@h/db'},
      {name: 'REGION', value: 'us-east-1'},
    ])
    assert.deepEqual(secrets, ['pw-1', 'p%40ss', 'p@ss'])
  })
})
