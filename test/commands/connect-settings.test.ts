import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'

// Every command that reaches Connect reads the server, the API key and the CA bundle in one place
// (MlflowctlCommand.connection): one error code each, exit 3, with the variable to set.
const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
const noConnect = {
  CONNECT_SERVER: undefined,
  CONNECT_API_KEY: undefined,
  CONNECT_CA_CERTIFICATE: undefined,
  MLFLOWCTL_CONFIG_DIR: tempDir('connect-settings-'),
}

describe('Connect settings (no server needed)', () => {
  it('without a server or an API key: CONNECT_NOT_CONFIGURED (exit 3) from every Connect command, naming what is missing', async () => {
    const commands = [
      ['deploy', tempDir()],
      ['rollback', '--guid', GUID, '--yes'],
      ['client-env', '--guid', GUID],
      ['upgrade', 'plan', '--guid', GUID, '--to', '3.17.2'],
      ['upgrade', 'apply', '--guid', GUID, '--to', '3.17.2', '--yes'],
    ]
    for (const args of commands) {
      const result = await runCli([...args, '--json'], {env: noConnect})
      assert.equal(result.code, 3, `${args.join(' ')}: ${result.stdout}${result.stderr}`)
      assert.equal(result.json!.error!.code, 'CONNECT_NOT_CONFIGURED', args.join(' '))
      assert.match(result.json!.error!.message, /needs a Connect server and an API key\.$/)
      assert.ok(result.json!.error!.suggestions.some((s) => s.includes('CONNECT_SERVER')))
    }
    const keyOnly = await runCli(['rollback', '--guid', GUID, '--yes', '--server', 'http://127.0.0.1:9', '--json'], {
      env: noConnect,
    })
    assert.equal(keyOnly.json!.error!.code, 'CONNECT_NOT_CONFIGURED')
    assert.match(keyOnly.json!.error!.message, /needs an API key\.$/)
  })

  it('a CA bundle that is not there: CA_NOT_FOUND (exit 3), not a crash; unused by a command that stays local', async () => {
    const env = {...noConnect, CONNECT_SERVER: 'https://127.0.0.1:9', CONNECT_API_KEY: 'some-key-0123456789'}
    const result = await runCli(
      ['rollback', '--guid', GUID, '--yes', '--ca-certificate', '/missing/ca.pem', '--json'],
      {env},
    )
    assert.equal(result.code, 3, result.stdout + result.stderr)
    assert.equal(result.json!.error!.code, 'CA_NOT_FOUND')
    assert.match(result.json!.error!.message, /\/missing\/ca\.pem: no such file/)
    assert.ok(!result.stdout.includes('some-key-0123456789'))
    // backup list never reaches Connect, so a stale CA setting does not stop it.
    const list = await runCli(['backup', 'list', '--repo', tempDir(), '--json'], {
      env: {...env, CONNECT_CA_CERTIFICATE: '/missing/ca.pem'},
    })
    assert.equal(list.code, 0, list.stdout + list.stderr)
  })
})
