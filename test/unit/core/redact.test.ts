import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {redact, redactDeep, urlPasswordForms} from '../../../src/core/redact.js'

describe('redact', () => {
  const cases: Array<[string, string, string[]]> = [
    ['postgresql://mlflow:s3cret@db:5432/mlflow', 'postgresql://mlflow:***@db:5432/mlflow', []],
    ['postgresql+psycopg2://u:p%40ss@h/db?sslmode=require', 'postgresql+psycopg2://u:***@h/db?sslmode=require', []],
    ['https://s3.example/x?X-Amz-Signature=abcd1234&part=1', 'https://s3.example/x?X-Amz-Signature=***&part=1', []],
    ['https://h/api?token=tok123&x=1', 'https://h/api?token=***&x=1', []],
    ['Authorization: Key abcdefgh12345678', 'Authorization: Key ***', []],
    ['sent Bearer eyJhbGciOi.xyz.abc', 'sent Bearer ***', []],
    ['the key is k3y-value-42 here', 'the key is *** here', ['k3y-value-42']],
    ['short ab stays', 'short ab stays', ['ab']],
    ['nested secret-long and secret', 'nested *** and ***', ['secret', 'secret-long']],
    ['https://connect.example.com/content/abc/', 'https://connect.example.com/content/abc/', []],
  ]
  for (const [input, expected, secrets] of cases) {
    it(`masks ${JSON.stringify(input)}`, () => {
      assert.equal(redact(input, secrets), expected)
    })
  }

  it('masks every string in a JSON value and keeps its shape', () => {
    const value = {url: 'postgresql://u:pw@h/db', list: ['tok-12345'], n: 3}
    assert.deepEqual(redactDeep(value, ['tok-12345']), {url: 'postgresql://u:***@h/db', list: ['***'], n: 3})
  })
})

describe('urlPasswordForms', () => {
  it('gives the password as typed and percent-decoded, once each', () => {
    assert.deepEqual(urlPasswordForms('postgresql://mlflow:s3cr%40t@db:5432/mlflow'), ['s3cr%40t', 's3cr@t'])
    assert.deepEqual(urlPasswordForms('postgresql://mlflow:plain@db/mlflow'), ['plain'])
  })
  it('has nothing for a URL without a password, a path or undefined; a malformed escape stays as typed', () => {
    assert.deepEqual(urlPasswordForms('postgresql://mlflow@db/mlflow'), [])
    assert.deepEqual(urlPasswordForms('/srv/mlflow/data'), [])
    assert.deepEqual(urlPasswordForms(undefined), [])
    assert.deepEqual(urlPasswordForms('postgresql://u:bad%zz@db/x'), ['bad%zz'])
  })
})
