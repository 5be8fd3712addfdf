import assert from 'node:assert/strict'
import {appendFileSync, existsSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {listTarGz} from '../../src/adapters/fs/tar-gz.js'
import {runCli, tempDir} from '../support/cli.js'

async function rendered(): Promise<string> {
  const dir = join(tempDir(), 'ext')
  assert.equal((await runCli(['init', dir])).code, 0)
  return dir
}

describe('mlflowctl bundle', () => {
  it('writes an archive with the files at the root and manifest.json last', async () => {
    const dir = await rendered()
    const out = join(tempDir(), 'b.tar.gz')
    const {code, json, stderr} = await runCli(['bundle', dir, '-o', out, '--json'])
    assert.equal(code, 0, stderr)
    const entries = await listTarGz(out)
    assert.equal(entries.at(-1), 'manifest.json')
    assert.ok(
      entries.includes('app.py') &&
        entries.includes('requirements.txt') &&
        entries.includes('mlflowctl_extension/server.py'),
    )
    assert.deepEqual(json!.result.files, entries)
    assert.equal(json!.result.bytes > 0, true)
  })

  it('refuses a bundle whose files changed since the manifest (exit 6) and writes nothing', async () => {
    const dir = await rendered()
    appendFileSync(join(dir, 'app.py'), '\n# edited\n')
    rmSync(join(dir, 'requirements.txt'))
    const out = join(tempDir(), 'b.tar.gz')
    const {code, json} = await runCli(['bundle', dir, '--output', out, '--json'])
    assert.equal(code, 6)
    assert.equal(json!.error!.code, 'MANIFEST_STALE')
    assert.match(json!.error!.message, /app\.py/)
    assert.match(json!.error!.message, /requirements\.txt/)
    assert.ok(!existsSync(out) && !existsSync(`${out}.partial`))
  })

  it('exits 2 without --output, and 5 when the directory holds no manifest', async () => {
    const dir = await rendered()
    assert.equal((await runCli(['bundle', dir])).code, 2)
    const empty = tempDir()
    const {code, json} = await runCli(['bundle', empty, '-o', join(empty, 'x.tar.gz'), '--json'])
    assert.equal(code, 5)
    assert.equal(json!.error!.code, 'FILE_NOT_FOUND')
  })
})
