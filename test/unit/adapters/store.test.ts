// The store contract every backend keeps, run against the directory backend and an in-memory backend registered for
// the test in one line; then a backup repository working over the in-memory store. The object-store backends keep
// the same contract against their emulators (test/integration/backup-stores.test.ts, replica-stores.test.ts).
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {objectStoreRepository} from '../../../src/adapters/backup/repository.js'
import {STORE_BACKENDS, isNotFound, listAll, openStore, type Store} from '../../../src/adapters/store/index.js'
import {MlflowctlError} from '../../../src/errors.js'
import {openMemoryStore} from '../../support/memory-store.js'
import {tempDir} from '../../support/cli.js'

const backends = {...STORE_BACKENDS, memory: openMemoryStore}
let buckets = 0
const kinds: Array<[string, () => Promise<Store>]> = [
  ['directory', () => openStore(tempDir('store-'), {backends})],
  ['memory://', () => openStore(`memory://bucket-${++buckets}/team-a`, {backends})],
]

for (const [kind, open] of kinds) {
  describe(`the store contract: ${kind}`, () => {
    it('put, get and a missing key that isNotFound tells apart', async () => {
      const store = await open()
      await store.put('generations/g1/snapshot.json', Buffer.from('{"a":1}'))
      assert.equal((await store.get('generations/g1/snapshot.json')).toString(), '{"a":1}')
      const missing = await store.get('nope.json').then(
        () => undefined,
        (error: unknown) => error,
      )
      assert.ok(missing && isNotFound(missing), String(missing))
      assert.equal(isNotFound(new Error('connection reset')), false)
    })

    it('putIfAbsent creates once and never overwrites', async () => {
      const store = await open()
      assert.equal(await store.putIfAbsent('.lock', Buffer.from('first')), true)
      assert.equal(await store.putIfAbsent('.lock', Buffer.from('second')), false)
      assert.equal((await store.get('.lock')).toString(), 'first')
    })

    it('entries lists by key prefix, with sizes, relative to the root', async () => {
      const store = await open()
      for (const [key, body] of [
        ['a/1', 'x'],
        ['a/2', 'yy'],
        ['ab/3', 'zzz'],
        ['b', ''],
      ])
        await store.put(key, Buffer.from(body))
      const listed = await listAll(store, 'a/')
      assert.deepEqual(
        listed.map(({key, size}) => ({key, size})),
        [
          {key: 'a/1', size: 1},
          {key: 'a/2', size: 2},
        ],
      )
      // A version (mtime, ETag, generation) that changes when the bytes do at the same size: a snapshot rereads
      // only files whose size or version changed.
      assert.equal(typeof listed[0].version, 'string')
      await new Promise((resolve) => setTimeout(resolve, 5))
      await store.put('a/1', Buffer.from('q'))
      assert.notEqual((await listAll(store, 'a/1'))[0].version, listed[0].version)
      assert.deepEqual(
        (await listAll(store, 'a')).map((entry) => entry.key),
        ['a/1', 'a/2', 'ab/3'],
      )
      assert.deepEqual(
        (await listAll(store)).map((entry) => entry.key),
        ['a/1', 'a/2', 'ab/3', 'b'],
      )
      assert.deepEqual(await listAll(store, 'missing/'), [])
    })

    it('uploadFile and downloadFile carry a file byte for byte; delete removes, and a second delete is not found', async () => {
      const store = await open()
      const dir = tempDir()
      const body = Buffer.from(Array.from({length: 70_000}, (_, i) => i % 251))
      writeFileSync(join(dir, 'in.bin'), body)
      await store.uploadFile('artifacts/0/model.bin', join(dir, 'in.bin'))
      await store.downloadFile('artifacts/0/model.bin', join(dir, 'out.bin'))
      assert.ok(readFileSync(join(dir, 'out.bin')).equals(body))
      await store.delete('artifacts/0/model.bin')
      assert.deepEqual(await listAll(store, 'artifacts/'), [])
      await assert.rejects(store.delete('artifacts/0/model.bin'), (error) => isNotFound(error))
    })
  })
}

describe('stores at neighbouring prefixes', () => {
  it('memory://bucket/team-a does not see memory://bucket/team-ab', async () => {
    const a = await openStore('memory://shared/team-a', {backends})
    const ab = await openStore('memory://shared/team-ab', {backends})
    await ab.put('x', Buffer.from('theirs'))
    await a.put('y', Buffer.from('ours'))
    assert.deepEqual(
      (await listAll(a)).map((entry) => entry.key),
      ['y'],
    )
  })
})

describe('a backup repository over any store', () => {
  it('takes the lock once: a second holder is refused while it is held, and takes it after release', async () => {
    const repository = objectStoreRepository(await openStore('memory://repos/team-a', {backends}), tempDir())
    const release = await repository.lock(() => undefined)
    await assert.rejects(
      repository.lock(() => undefined),
      (error) => (error as MlflowctlError).code === 'REPO_LOCKED',
    )
    await release()
    const again = await repository.lock(() => undefined)
    await again()
    assert.deepEqual(await repository.list(), [])
  })
})
