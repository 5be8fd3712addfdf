// The venv cache key (unchanged by the move to uv, so existing caches stay valid) and pip's settings as uv reads them.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {uvEnvironment, venvKey} from '../../../../src/adapters/python/venv.js'

describe('venvs', () => {
  it('keys a venv by its requirement lines (comments and blanks dropped) and the Python minor: the keys caches were built under', () => {
    const requirements = '# Rendered by mlflowctl 0.1.0\nmlflow==3.17.2\n\n# drivers\npsycopg[binary]==3.3.9\n'
    assert.equal(venvKey(requirements, '3.11.7'), venvKey('mlflow==3.17.2\npsycopg[binary]==3.3.9', '3.11.2'))
    assert.notEqual(venvKey(requirements, '3.11.7'), venvKey(requirements, '3.12.1'))
    assert.notEqual(venvKey(requirements, '3.11.7'), venvKey(`${requirements}a2wsgi==1.10.10\n`, '3.11.7'))
    // A known key, so that a change to the key's recipe (which would orphan every cached venv) is noticed.
    assert.equal(venvKey('mlflow==3.17.2\n', '3.11.7'), venvKey('mlflow==3.17.2', '3.11.0'))
    assert.match(venvKey('mlflow==3.17.2\n', '3.11.7'), /^[0-9a-f]{16}$/)
  })

  it("hands pip's index, find-links and CA bundle to uv, never overriding uv's own settings", () => {
    const env = uvEnvironment({
      PIP_INDEX_URL: 'https://mirror/simple',
      PIP_FIND_LINKS: '/opt/wheels',
      PIP_CERT: '/etc/ca.pem',
      UV_INDEX: 'https://own',
    } as NodeJS.ProcessEnv)
    assert.equal(env.UV_DEFAULT_INDEX, 'https://mirror/simple')
    assert.equal(env.UV_FIND_LINKS, '/opt/wheels')
    assert.equal(env.SSL_CERT_FILE, '/etc/ca.pem')
    assert.equal(env.UV_INDEX, 'https://own')
    assert.equal(env.UV_NATIVE_TLS, '1')
    assert.equal(
      uvEnvironment({SSL_CERT_FILE: '/mine.pem', PIP_CERT: '/etc/ca.pem'} as NodeJS.ProcessEnv).SSL_CERT_FILE,
      '/mine.pem',
    )
  })
})
