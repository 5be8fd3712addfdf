import assert from 'node:assert/strict'
import {appendFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'

describe('mlflowctl dev (without starting MLflow)', () => {
  it('status of a never-started bundle exits 6 with running=false', async () => {
    const dir = join(tempDir(), 'ext')
    await runCli(['init', dir])
    const {code, json} = await runCli(['dev', 'status', dir, '--json'])
    assert.equal(code, 6)
    assert.equal(json!.status, 6)
    assert.equal(json!.result.running, false)
    assert.equal(json!.result.phase, 'never started')
  })

  it('down and logs are harmless when nothing runs', async () => {
    const dir = join(tempDir(), 'ext')
    await runCli(['init', dir])
    const down = await runCli(['dev', 'down', dir])
    assert.equal(down.code, 0)
    assert.match(down.stdout, /Not running/)
    const logs = await runCli(['dev', 'logs', dir, '--json'])
    assert.equal(logs.code, 0)
    assert.deepEqual(logs.json!.result.lines, [])
  })

  it('up refuses a stale bundle (exit 6) before building anything', async () => {
    const dir = join(tempDir(), 'ext')
    await runCli(['init', dir])
    appendFileSync(join(dir, 'requirements.txt'), 'evil-package\n')
    const cacheDir = tempDir()
    const {code, json} = await runCli(['dev', 'up', dir, '--json'], {env: {MLFLOWCTL_CACHE_DIR: cacheDir}})
    assert.equal(code, 6)
    assert.equal(json!.error!.code, 'MANIFEST_STALE')
  })

  it('up rejects a malformed -E without echoing values', async () => {
    const dir = join(tempDir(), 'ext')
    await runCli(['init', dir])
    const {code, stdout, stderr} = await runCli(['dev', 'up', dir, '-E', 'NOT_EXPORTED_ANYWHERE', '--json'])
    assert.equal(code, 2)
    assert.match(stdout, /ENV_VAR_NOT_SET/)
    assert.equal(stderr, '')
  })
})
