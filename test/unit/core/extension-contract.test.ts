import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {parseOpsStatus, parseRestoreResult, STATUS_FORMAT_VERSION} from '../../../src/core/extension-contract.js'
import {MlflowctlError} from '../../../src/errors.js'

const codeOf = (action: () => unknown): string => {
  try {
    action()
  } catch (error) {
    assert.ok(error instanceof MlflowctlError, String(error))
    return error.code
  }
  return 'no error'
}

describe('the ops endpoint contract', () => {
  it('reads the status of an older extension (no statusVersion, few fields) and keeps unknown fields', () => {
    const status = parseOpsStatus(JSON.stringify({dbRevision: null, schemaState: 'empty', futureField: 1}))
    assert.equal(status.dbRevision, null)
    assert.equal((status as Record<string, unknown>).futureField, 1)
  })

  it('refuses answers it cannot read, each with its code', () => {
    assert.equal(
      codeOf(() => parseOpsStatus('<html>proxy error</html>')),
      'EXTENSION_ANSWER_INVALID',
    )
    assert.equal(
      codeOf(() => parseOpsStatus({tables: 'experiments'})),
      'EXTENSION_ANSWER_INVALID',
    )
    assert.equal(
      codeOf(() => parseOpsStatus({credentials: [{name: 'aws', expiresAt: null, renewals: 0, secret: 'x'}]})),
      'EXTENSION_ANSWER_INVALID',
      'a credential entry carries names and times only',
    )
    assert.equal(
      codeOf(() => parseOpsStatus({statusVersion: STATUS_FORMAT_VERSION + 1})),
      'EXTENSION_TOO_NEW',
    )
    assert.equal(
      codeOf(() => parseRestoreResult({revision: 'abc'})),
      'EXTENSION_ANSWER_INVALID',
    )
    assert.equal(parseRestoreResult('{"revision": "abc", "artifactFiles": 3}').artifactFiles, 3)
  })
})
