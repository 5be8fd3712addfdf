import assert from 'node:assert/strict'
import {mkdtemp, readdir, readFile, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import * as tar from 'tar'

import {listTarGz, writeTarGz} from '../../../src/adapters/fs/tar-gz.js'

describe('writeTarGz', () => {
  it('puts the files at the archive root in the given order and leaves no .partial behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'arch-'))
    await writeFile(join(dir, 'app.py'), 'print(1)\n')
    await writeFile(join(dir, 'manifest.json'), '{}\n')
    await writeFile(join(dir, 'not-listed.txt'), 'x')
    const out = join(dir, 'b.tar.gz')
    const result = await writeTarGz(dir, ['app.py', 'manifest.json'], out)
    assert.deepEqual(await listTarGz(out), ['app.py', 'manifest.json'])
    assert.match(result.sha256, /^[0-9a-f]{64}$/)
    assert.ok(result.bytes > 0)
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.endsWith('.partial')),
      [],
    )
    const extracted = await mkdtemp(join(tmpdir(), 'arch-x-'))
    await tar.extract({file: out, cwd: extracted})
    assert.equal(await readFile(join(extracted, 'app.py'), 'utf8'), 'print(1)\n')
  })

  it('fails with a typed error when a file is missing, and removes the partial archive', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'arch-'))
    await assert.rejects(
      writeTarGz(dir, ['missing.py'], join(dir, 'b.tar.gz')),
      (e: Error & {code?: string}) => e.code === 'ARCHIVE_FAILED',
    )
    assert.deepEqual(await readdir(dir), [])
  })
})
