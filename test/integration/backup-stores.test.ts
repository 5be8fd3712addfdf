// Backup repositories in object stores, on real emulators: moto S3 (IAM enforced), Azurite and
// gcp-storage-emulator. The same life cycle on each: create, a held lock, list, verify, prune, restore.
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import {join} from 'node:path'
import {before, describe, it, type TestContext} from 'node:test'

import {BlobServiceClient} from '@azure/storage-blob'
import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_EMULATORS, startGcsEmulator, startMoto} from '../support/cloud.js'
import {AZURITE_ACCOUNT, NO_AZURITE, NO_VENVS, azuriteBlobUrl, requireService, testVenvs} from '../support/services.js'
import {parseArtifactUrl} from '../../src/core/artifact-url.js'
import {openStore} from '../../src/adapters/store/index.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

/** The bucket or container a store URL names, without its prefix. */
const bucketOf = (url: string) => url.replace(/^([a-z0-9]+:\/\/[^/]+).*$/, '$1')

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
let source = ''

/** An app-data directory with a real MLflow schema (the store creates it) and one artifact. */
before(() => {
  if (!venv) return
  source = join(tempDir('store-source-'), 'data')
  mkdirSync(join(source, 'artifacts', '0', 'r'.repeat(32), 'artifacts'), {recursive: true})
  writeFileSync(join(source, 'artifacts', '0', 'r'.repeat(32), 'artifacts', 'model.txt'), 'weights')
  execFileSync(
    venv.python,
    [
      '-c',
      `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; SqlAlchemyStore('sqlite:///${join(source, 'mlflow.db')}', '${join(source, 'artifacts')}')`,
    ],
    {stdio: 'pipe'},
  )
})

async function lifeCycle(t: TestContext, repo: string, env: Record<string, string>) {
  const cli = (args: string[]) => runCli(['backup', ...args, '--json'], {env})
  const first = await cli(['create', '--source', source, '--repo', repo])
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`)
  assert.equal(first.json!.result.path, `${repo}/${first.json!.result.id}.mlflowctl-backup.tar.gz`)

  // A live holder (this test process, this host) blocks a second run; nothing is left half-written.
  // The bucket itself (keys absolute in it): the test reaches beside the repository's prefix too.
  const store = await openStore(bucketOf(repo), {env: {...process.env, ...env}})
  const prefix = parseArtifactUrl(repo).prefix
  const lockKey = `${prefix}/.mlflowctl-backup.lock`
  assert.ok(
    await store.putIfAbsent(
      lockKey,
      Buffer.from(JSON.stringify({pid: process.pid, host: hostname(), startedAt: new Date().toISOString()})),
    ),
  )
  assert.equal(
    await store.putIfAbsent(lockKey, Buffer.from('{}')),
    false,
    'the store refuses a second create of the lock',
  )
  const locked = await cli(['create', '--source', source, '--repo', repo])
  assert.equal(locked.json!.error?.code, 'REPO_LOCKED', locked.stdout + locked.stderr)
  assert.equal(locked.code, 5)
  // A dead holder's lock is taken over.
  await store.delete(lockKey)
  assert.ok(
    await store.putIfAbsent(
      lockKey,
      Buffer.from(JSON.stringify({pid: 2 ** 22 + 7, host: hostname(), startedAt: new Date().toISOString()})),
    ),
  )
  const second = await cli(['create', '--source', source, '--repo', repo])
  assert.equal(second.code, 0, second.stdout)
  assert.ok(second.json!.warnings!.some((w: string) => /took over a stale lock/.test(w)))
  // An archive without its sidecar (an upload cut short) is never listed.
  await store.put(`${prefix}/20200101T000000Z-dead00.mlflowctl-backup.tar.gz`, Buffer.from('half'))

  const listed = await cli(['list', '--repo', repo])
  assert.deepEqual(
    listed.json!.result.backups.map((b: {id: string}) => b.id),
    [second.json!.result.id, first.json!.result.id],
  )
  const verified = await cli(['verify', second.json!.result.id, '--repo', repo])
  assert.equal(verified.code, 0, verified.stdout)
  assert.ok((await cli(['list', '--repo', repo])).json!.result.backups[0].verifiedAt)
  const pruned = await cli(['prune', '--repo', repo, '--keep-last', '1', '--yes'])
  assert.deepEqual(
    pruned.json!.result.remove.map((b: {id: string}) => b.id),
    [first.json!.result.id],
  )
  assert.deepEqual(
    (await cli(['list', '--repo', repo])).json!.result.backups.map((b: {id: string}) => b.id),
    [second.json!.result.id],
  )

  const target = join(tempDir('store-restore-'), 'data')
  const restored = await cli(['restore', second.json!.result.id, '--repo', repo, '--to', target])
  assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`)
  assert.equal(
    readFileSync(join(target, 'artifacts', '0', 'r'.repeat(32), 'artifacts', 'model.txt'), 'utf8'),
    'weights',
  )
  // Artifacts restored into the store itself (--artifacts-to an empty prefix), their locations rewritten to it;
  // a prefix that holds objects is refused, --force included (a restore never deletes objects in a bucket).
  const intoStore = `${repo}-restored`
  const dbTarget = join(tempDir('store-db-target-'), 'mlflow.db')
  const restoreIntoStore = (...extra: string[]) =>
    cli([
      'restore',
      second.json!.result.id,
      '--repo',
      repo,
      '--to',
      `sqlite:///${dbTarget}`,
      '--artifacts-to',
      intoStore,
      ...extra,
    ])
  const toStore = await restoreIntoStore()
  assert.equal(toStore.code, 0, `${toStore.stdout}\n${toStore.stderr}`)
  assert.equal(toStore.json!.result.artifactFiles, 1)
  assert.deepEqual(toStore.json!.result.artifactLocations.rewritten, {'experiments.artifact_location': 1})
  const intoPrefix = parseArtifactUrl(intoStore).prefix
  assert.equal((await store.get(`${intoPrefix}/0/${'r'.repeat(32)}/artifacts/model.txt`)).toString(), 'weights')
  const restoredDb = new Database(dbTarget, {readonly: true})
  const experimentZero = restoredDb
    .prepare('SELECT artifact_location FROM experiments WHERE experiment_id = 0')
    .pluck()
    .get()
  restoredDb.close()
  assert.equal(experimentZero, `${intoStore}/0`)
  const refused = await restoreIntoStore('--force', '--yes')
  assert.equal(refused.code, 2, refused.stdout)
  assert.equal(refused.json!.error!.code, 'TARGET_NOT_EMPTY')
  assert.match(refused.json!.error!.message, /holds 1 objects.*never deletes objects/)
  assert.equal((await store.get(`${intoPrefix}/0/${'r'.repeat(32)}/artifacts/model.txt`)).toString(), 'weights')

  // Artifacts read from the same store (as a sqlite:/// source's --artifacts-source), one object at a time.
  await store.put(`${prefix}-artifacts/2/${'s'.repeat(32)}/artifacts/remote.txt`, Buffer.from('from the store'))
  const fromStore = await cli([
    'create',
    '--source',
    `sqlite:///${join(source, 'mlflow.db')}`,
    '--artifacts-source',
    `${repo}-artifacts`,
    '--repo',
    tempDir('store-local-repo-'),
  ])
  assert.equal(fromStore.code, 0, fromStore.stdout)
  const fromStoreTarget = join(tempDir('store-artifacts-restore-'), 'data')
  assert.equal((await cli(['restore', fromStore.json!.result.path, '--to', fromStoreTarget])).code, 0)
  assert.equal(
    readFileSync(join(fromStoreTarget, 'artifacts', '2', 's'.repeat(32), 'artifacts', 'remote.txt'), 'utf8'),
    'from the store',
  )

  const missing = await cli(['verify', '20990101T000000Z-000000', '--repo', repo])
  assert.equal(missing.json!.error!.code, 'BACKUP_NOT_FOUND')

  // Snapshots in the store, of artifacts in the store: a second backup downloads no unchanged object (their ETag or
  // generation says so); a changed one is read again; packs are downloaded to read the data back.
  const weights = randomBytes(700 * 1024)
  await store.put(`${prefix}-artifacts/2/${'s'.repeat(32)}/artifacts/weights.bin`, weights)
  const snapshots = `${repo}-snapshots`
  const snapshot = () =>
    cli([
      'create',
      '--source',
      `sqlite:///${join(source, 'mlflow.db')}`,
      '--artifacts-source',
      `${repo}-artifacts`,
      '--repo',
      snapshots,
      '--format',
      'snapshot',
    ])
  const taken = await snapshot()
  assert.equal(taken.code, 0, taken.stdout + taken.stderr)
  assert.equal(taken.json!.result.snapshot.filesNew, 3)
  const again = (await snapshot()).json!.result.snapshot
  assert.deepEqual([again.filesNew, again.bytesRead, again.blobsAdded], [0, 0, 0])
  const changed = randomBytes(weights.length)
  await store.put(`${prefix}-artifacts/2/${'s'.repeat(32)}/artifacts/weights.bin`, changed)
  assert.equal((await snapshot()).json!.result.snapshot.filesNew, 1, 'only the changed object is downloaded')
  assert.equal((await cli(['verify', 'latest', '--repo', snapshots, '--read-data'])).code, 0)
  const snapshotTarget = join(tempDir('store-snapshot-restore-'), 'data')
  const fromSnapshot = await cli(['restore', 'latest', '--repo', snapshots, '--to', snapshotTarget])
  assert.equal(fromSnapshot.code, 0, fromSnapshot.stdout + fromSnapshot.stderr)
  assert.ok(
    readFileSync(join(snapshotTarget, 'artifacts', '2', 's'.repeat(32), 'artifacts', 'weights.bin')).equals(changed),
  )
  const prunedSnapshots = await cli(['prune', '--repo', snapshots, '--keep-last', '1', '--yes'])
  assert.equal(prunedSnapshots.code, 0, prunedSnapshots.stdout)
  assert.ok(prunedSnapshots.json!.result.data.packsRemoved + prunedSnapshots.json!.result.data.packsRewritten > 0)
  assert.equal((await cli(['verify', 'latest', '--repo', snapshots, '--read-data'])).code, 0)
  t.diagnostic(`${repo}: create, lock, list, verify, prune and restore passed, for archives and snapshots`)
}

describe('backup repositories in object stores', () => {
  it('S3 (moto, IAM enforced): the whole life cycle; the lock is a conditional put', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const moto = await startMoto('mlflow-backups')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const creds = await moto!.assumeRole()
    await lifeCycle(t, 's3://mlflow-backups/nightly', {
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
      AWS_REGION: 'us-east-1',
      MLFLOW_S3_ENDPOINT_URL: moto!.url,
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    })
  })

  it('Azure Blob (Azurite): the whole life cycle', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const blob = azuriteBlobUrl()
    if (!requireService(t, Boolean(blob), NO_AZURITE)) return
    const connection = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=${blob};`
    const container = `backups-${Date.now()}`
    await BlobServiceClient.fromConnectionString(connection).getContainerClient(container).createIfNotExists()
    await lifeCycle(t, `wasbs://${container}@${AZURITE_ACCOUNT.name}.blob.core.windows.net/nightly`, {
      AZURE_STORAGE_CONNECTION_STRING: connection,
    })
  })

  it('GCS (gcp-storage-emulator): the whole life cycle', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const emulator = await startGcsEmulator('mlflow-backups')
    if (!requireService(t, Boolean(emulator), NO_EMULATORS)) return
    await lifeCycle(t, 'gs://mlflow-backups/nightly', {STORAGE_EMULATOR_HOST: emulator!})
  })
})
