import assert from 'node:assert/strict'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {NEWEST_KNOWN_MLFLOW} from '../../src/core/versions.js'
import {runCli, tempDir} from '../support/cli.js'

describe('mlflowctl init', () => {
  it('renders a bundle and prints one JSON envelope on stdout, nothing on stderr', async () => {
    const dir = join(tempDir(), 'ext')
    const {code, json, stderr} = await runCli(['init', dir, '--json'])
    assert.equal(code, 0, stderr)
    assert.equal(stderr, '')
    assert.equal(json!.status, 0)
    assert.deepEqual(json!.warnings, [])
    assert.equal(json!.result.mlflowVersion, NEWEST_KNOWN_MLFLOW)
    assert.equal(json!.result.storage, 'local')
    assert.equal(json!.result.appMode, 'python-fastapi')
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))
    assert.equal(manifest.metadata.appmode, 'python-fastapi')
    assert.ok(existsSync(join(dir, 'app.py')) && existsSync(join(dir, 'mlflowctl_extension', 'server.py')))
  })

  it('writes human output to stdout and takes flag values from MLFLOWCTL_* env vars', async () => {
    const dir = join(tempDir(), 'ext')
    const {code, stdout} = await runCli(['init', dir], {
      env: {MLFLOWCTL_STORAGE: 'custom', MLFLOWCTL_MLFLOW_VERSION: '2.22.5'},
    })
    assert.equal(code, 0)
    assert.match(stdout, /MLflow:\s+2\.22\.5/)
    assert.match(stdout, /MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION/)
    assert.match(readFileSync(join(dir, 'manifest.json'), 'utf8'), /"appmode": "python-api"/)
  })

  it('refuses a non-empty directory (exit 2) unless --force', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'notes.txt'), 'mine')
    const refused = await runCli(['init', dir, '--json'])
    assert.equal(refused.code, 2)
    assert.equal(refused.json!.status, 2)
    assert.equal(refused.json!.error!.code, 'DIR_NOT_EMPTY')
    assert.match(refused.json!.error!.suggestions[0], /--force/)
    assert.ok(!existsSync(join(dir, 'app.py')))
    const forced = await runCli(['init', dir, '--force'])
    assert.equal(forced.code, 0)
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'mine', 'unrelated files are kept')
  })

  for (const [args, errorCode] of [
    [['--mlflow-version', '1.30.0'], 'UNSUPPORTED_MLFLOW_VERSION'],
    [['--mlflow-version', 'latest'], 'INVALID_MLFLOW_VERSION'],
    [['--storage', 'ftp'], 'USAGE'],
    [['--no-such-flag'], 'UNKNOWN_FLAG'],
  ] as const) {
    it(`exits 2 with ${errorCode} for ${args.join(' ')}`, async () => {
      const {code, json} = await runCli(['init', join(tempDir(), 'x'), ...args, '--json'])
      assert.equal(code, 2)
      assert.equal(json!.error!.code, errorCode)
    })
  }

  it('exits 3 for a configuration problem: an unknown profile or a broken config file', async () => {
    const unknown = await runCli(['init', join(tempDir(), 'x'), '--json'], {env: {MLFLOWCTL_PROFILE: 'staging'}})
    assert.equal(unknown.code, 3)
    assert.equal(unknown.json!.error!.code, 'PROFILE_NOT_FOUND')
    const configDir = tempDir()
    writeFileSync(join(configDir, 'config.json'), '{broken')
    const broken = await runCli(['init', join(tempDir(), 'x')], {env: {MLFLOWCTL_CONFIG_DIR: configDir}})
    assert.equal(broken.code, 3)
    assert.match(broken.stderr, /config\.json is not valid/)
  })

  it('exits 3 when the Python interpreter is missing', async () => {
    const {code, json} = await runCli(['init', join(tempDir(), 'x'), '--json'], {
      env: {MLFLOWCTL_PYTHON: '/nonexistent/python3'},
    })
    assert.equal(code, 3)
    assert.equal(json!.error!.code, 'PYTHON_NOT_FOUND')
  })

  it('never prints a secret from the environment in an error', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'sub'))
    const secret = 'connect-api-key-do-not-print'
    const {stdout, stderr} = await runCli(['init', dir, '--json'], {env: {CONNECT_API_KEY: secret}})
    assert.ok(!stdout.includes(secret) && !stderr.includes(secret))
  })
})
