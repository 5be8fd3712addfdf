// Object-store replicas (issue 19) on the emulators: the extension's Replicator (in the bundle venv of the cloud mode
// whose SDK it needs) ships a real MLflow store and an artifact to moto S3, Azurite and the GCS emulator; `replica
// status` reads what it holds; `backup restore --from-replica` rebuilds the database and the artifact from the bucket;
// a damaged segment object stops the restore with REPLICA_CORRUPT.
import assert from 'node:assert/strict'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it, type TestContext} from 'node:test'

import {BlobServiceClient} from '@azure/storage-blob'
import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_EMULATORS, startGcsEmulator, startMoto} from '../support/cloud.js'
import {
  AZURITE_ACCOUNT,
  NO_AZURITE,
  NO_VENVS,
  azuriteBlobUrl,
  cloudVenv,
  requireService,
  runWithExtension,
} from '../support/services.js'
import {parseArtifactUrl} from '../../src/core/artifact-url.js'
import {openObjectStore} from '../../src/adapters/object-store.js'

/** Two rounds of 100 metrics and one artifact, shipped to the replica URL; prints the run ID. */
const WRITE = `
import sys
from pathlib import Path
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflowctl_extension.replicator import Replicator
db, replica, artifacts = sys.argv[1], sys.argv[2], Path(sys.argv[3])
SqlAlchemyStore(f"sqlite:///{db}", str(artifacts))
replicator = Replicator(Path(db), replica, artifacts=artifacts, artifact_interval=0)
replicator.ship()
mlflow.set_tracking_uri(f"sqlite:///{db}")
with mlflow.start_run() as run:
    for step in range(100):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    model = artifacts / "0" / run.info.run_id / "artifacts" / "model.txt"
    model.parent.mkdir(parents=True)
    model.write_text("weights")
    replicator.ship()
    replicator.ship()  # the artifact held still for a scan: shipped now
    for step in range(100, 200):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    replicator.ship()
replicator.close()
print(run.info.run_id)
`

async function replicaLifeCycle(t: TestContext, python: string, url: string, env: Record<string, string>) {
  const work = tempDir('replica-store-')
  const run = runWithExtension(python, WRITE, [join(work, 'mlflow.db'), url, join(work, 'artifacts')], env)
  const cli = (args: string[]) => runCli([...args, '--json'], {env})

  const status = await cli(['replica', 'status', '--replica', url])
  assert.equal(status.code, 0, `${status.stdout}\n${status.stderr}`)
  const contents = status.json!.result.contents
  assert.equal(contents.generations.length, 1)
  assert.ok(contents.generations[0].segments >= 2, JSON.stringify(contents))
  assert.deepEqual(contents.artifacts, {files: 1, bytes: 7})
  assert.ok(contents.window.from <= contents.window.to)

  const target = join(work, 'restored')
  const restored = await cli(['backup', 'restore', '--from-replica', url, '--to', target])
  assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`)
  const db = new Database(join(target, 'mlflow.db'), {readonly: true})
  try {
    assert.equal(db.prepare('SELECT count(*) FROM metrics WHERE run_uuid = ?').pluck().get(run), 200)
  } finally {
    db.close()
  }
  assert.equal(readFileSync(join(target, 'artifacts', '0', run, 'artifacts', 'model.txt'), 'utf8'), 'weights')

  // The newest segment object damaged in the bucket: nothing restored, and where the replica still reaches.
  const location = parseArtifactUrl(url)
  const store = await openObjectStore(location, {...process.env, ...env})
  const segments = (await store.list(`${location.prefix}/generations/`)).filter(({key}) => key.endsWith('.frames.gz'))
  const last = segments
    .map(({key}) => key)
    .sort()
    .at(-1)!
  const bytes = await store.get(last)
  bytes[bytes.length >> 1] ^= 0x10
  await store.put(last, bytes)
  const damaged = join(work, 'damaged')
  const refused = await cli(['backup', 'restore', '--from-replica', url, '--to', damaged])
  assert.equal(refused.code, 6, refused.stdout)
  assert.equal(refused.json!.error!.code, 'REPLICA_CORRUPT')
  assert.match(refused.json!.error!.suggestions!.join('\n'), /--at \d{4}-/)
  assert.ok(!existsSync(join(damaged, 'mlflow.db')), 'nothing restored')
  t.diagnostic(`${url}: shipped, summarized, restored (200 metrics, 1 artifact), damage detected`)
}

describe('replicas in object stores', () => {
  it('S3 (moto, IAM enforced)', async (t) => {
    const venv = cloudVenv('aws')
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const moto = await startMoto('mlflow-replicas')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    const creds = await moto!.assumeRole()
    await replicaLifeCycle(t, venv!.python, 's3://mlflow-replicas/team-a', {
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
      MLFLOW_S3_ENDPOINT_URL: moto!.url,
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    })
  })

  it('Azure Blob (Azurite)', async (t) => {
    const venv = cloudVenv('azure')
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const blob = azuriteBlobUrl()
    if (!requireService(t, Boolean(blob), NO_AZURITE)) return
    const connection = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=${blob};`
    const container = `replicas-${Date.now()}`
    await BlobServiceClient.fromConnectionString(connection).getContainerClient(container).createIfNotExists()
    await replicaLifeCycle(
      t,
      venv!.python,
      `wasbs://${container}@${AZURITE_ACCOUNT.name}.blob.core.windows.net/team-a`,
      {
        AZURE_STORAGE_CONNECTION_STRING: connection,
      },
    )
  })

  it('GCS (gcp-storage-emulator)', async (t) => {
    const venv = cloudVenv('gcp')
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const emulator = await startGcsEmulator('mlflow-replicas')
    if (!requireService(t, Boolean(emulator), NO_EMULATORS)) return
    await replicaLifeCycle(t, venv!.python, 'gs://mlflow-replicas/team-a', {STORAGE_EMULATOR_HOST: emulator!})
  })
})
