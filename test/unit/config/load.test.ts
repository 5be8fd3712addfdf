import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {loadSettings, parseProfileFile, type LoadSettingsInput} from '../../../src/config/load.js'
import {ConfigError, ExitCode} from '../../../src/errors.js'

const dirs = {config: '/cfg', cache: '/cache', data: '/data'}
const input = (overrides: Partial<LoadSettingsInput>): LoadSettingsInput => ({flags: {}, env: {}, dirs, ...overrides})
const profileFile = {
  profiles: {
    default: {server: 'https://profile.example', apiKeyEnv: 'TEAM_KEY'},
    prod: {server: 'https://prod.example'},
  },
}

describe('loadSettings precedence: flag > env > profile > default', () => {
  it('takes the flag over everything', () => {
    const settings = loadSettings(
      input({flags: {server: 'https://flag.example'}, env: {MLFLOWCTL_SERVER: 'https://env.example'}, profileFile}),
    )
    assert.deepEqual(settings.server, {value: 'https://flag.example', source: 'flag', from: undefined})
  })

  it('takes MLFLOWCTL_* over CONNECT_* and both over the profile', () => {
    const both = loadSettings(
      input({env: {MLFLOWCTL_SERVER: 'https://a.example', CONNECT_SERVER: 'https://b.example'}, profileFile}),
    )
    assert.equal(both.server.value, 'https://a.example')
    const rsconnectStyle = loadSettings(
      input({
        env: {CONNECT_SERVER: 'https://b.example', CONNECT_API_KEY: 'k1', CONNECT_CA_CERTIFICATE: '/ca.pem'},
        profileFile,
      }),
    )
    assert.deepEqual(rsconnectStyle.server, {value: 'https://b.example', source: 'env', from: 'CONNECT_SERVER'})
    assert.equal(rsconnectStyle.apiKey.value, 'k1')
    assert.equal(rsconnectStyle.caCertificate.value, '/ca.pem')
  })

  it('reads the profile, resolving the API key through the env var it names', () => {
    const settings = loadSettings(input({env: {TEAM_KEY: 'secret-from-env'}, profileFile}))
    assert.equal(settings.server.source, 'profile')
    assert.equal(settings.apiKey.value, 'secret-from-env')
    assert.match(settings.apiKey.from!, /apiKeyEnv -> \$TEAM_KEY/)
  })

  it('selects a profile by flag or MLFLOWCTL_PROFILE', () => {
    assert.equal(loadSettings(input({flags: {profile: 'prod'}, profileFile})).server.value, 'https://prod.example')
    assert.equal(loadSettings(input({env: {MLFLOWCTL_PROFILE: 'prod'}, profileFile})).profile.source, 'env')
  })

  it('falls back to defaults, and lets MLFLOWCTL_CACHE_DIR/DATA_DIR move the dirs', () => {
    const settings = loadSettings(input({env: {MLFLOWCTL_CACHE_DIR: '/c2'}}))
    assert.deepEqual(settings.server, {value: undefined, source: 'default'})
    assert.equal(settings.cacheDir, '/c2')
    assert.equal(settings.dataDir, '/data')
  })

  it('rejects an explicitly named profile that does not exist (exit 3)', () => {
    assert.throws(
      () => loadSettings(input({flags: {profile: 'staging'}, profileFile})),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.code === 'PROFILE_NOT_FOUND' &&
        error.exit === ExitCode.Config &&
        /prod/.test(error.suggestionList[0]),
    )
  })
})

describe('parseProfileFile', () => {
  it('turns malformed JSON into a ConfigError naming the file', () => {
    assert.throws(() => parseProfileFile('{not json', '/cfg/config.json'), /\/cfg\/config.json is not valid/)
    assert.throws(() => parseProfileFile('{"profiles": []}', '/cfg/config.json'), ConfigError)
  })
})
