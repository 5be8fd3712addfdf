// Object-store replicas on the emulators: the extension's Replicator (in the bundle venv of the cloud mode
// whose SDK it needs) ships a real MLflow store and an artifact to moto S3, Azurite and the GCS emulator; `replica
// status` reads what it holds; `backup restore --from-replica` rebuilds the database and the artifact from the bucket;
// a damaged segment object stops the restore with REPLICA_CORRUPT. The kill test around a frozen S3 endpoint: the
// stall is reported as an error, a kill while frozen restores consistently, and after the thaw the bound holds again.
import assert from 'node:assert/strict'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, it, type TestContext} from 'node:test'

import {BlobServiceClient} from '@azure/storage-blob'
import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_EMULATORS, type Moto, startGcsEmulator, startMoto} from '../support/cloud.js'
import {
  AZURITE_ACCOUNT,
  NO_AZURITE,
  NO_VENVS,
  azuriteBlobUrl,
  cloudVenv,
  requireService,
  runWithExtension,
  startWithExtension,
} from '../support/services.js'
import {listAll, openStore} from '../../src/adapters/store/index.js'

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

/**
 * The extension's replication service (its three threads, 0.2 s rounds, a stall reported after 1 s) beside a writer
 * committing one metric row at a time from the step given; prints each acknowledged commit and, every 0.2 s, the
 * status, as JSON lines.
 */
const FROZEN = `
import json, sqlite3, sys, time
from pathlib import Path
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflowctl_extension.replica_service import ReplicationService
db, replica, state, step = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
store = SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "artifacts"))
run = store.create_run("0", "frozen", int(time.time() * 1000), [], "frozen").info.run_id
store.engine.dispose()
service = ReplicationService(db, replica, state, interval=0.2, stall_seconds=1.0)
service.start()
while service.status()["generation"] is None:
    time.sleep(0.05)
print("ready", flush=True)
writer = sqlite3.connect(db, isolation_level=None, timeout=30)
reported = 0.0
while True:
    writer.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES ('loss', 0.5, ?, ?, ?, 0)",
                   (int(time.time() * 1000), run, step))
    print(json.dumps({"ack": time.time(), "step": step}), flush=True)
    step += 1
    if time.time() - reported > 0.2:
        reported = time.time()
        print(json.dumps({"status": service.status()}), flush=True)
    time.sleep(0.02)
`

type FrozenLine = {ack?: number; step?: number; status?: {stalledSeconds: number | null; lastError: string | null}}

async function frozenTargetKillTest(t: TestContext, python: string, moto: Moto, env: Record<string, string>) {
  const work = tempDir('replica-frozen-')
  const url = 's3://mlflow-frozen/team-a'
  const db = join(work, 'mlflow.db')
  const lines = (writer: {output: () => string}) =>
    writer
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as FrozenLine)
  const waitFor = async (
    writer: {output: () => string},
    what: string,
    condition: (line: FrozenLine) => boolean,
    fromLine = 0,
  ) => {
    for (let tries = 0; tries < 300; tries++) {
      if (lines(writer).slice(fromLine).some(condition)) return
      await sleep(100)
    }
    assert.fail(`${what}: never reported\n${writer.output().split('\n').slice(-3).join('\n')}`)
  }
  const kill = async (writer: Awaited<ReturnType<typeof startWithExtension>>) => {
    if (writer.child.exitCode === null && writer.child.signalCode === null) {
      const exited = new Promise((resolve) => writer.child.once('exit', resolve))
      writer.child.kill('SIGKILL')
      await exited
    }
    return Date.now() / 1000
  }
  const restoredSteps = async (name: string) => {
    const target = join(work, name)
    const restored = await runCli(['backup', 'restore', '--from-replica', url, '--to', target, '--json'], {env})
    assert.equal(restored.code, 0, `${name}:\n${restored.stdout}\n${restored.stderr}`)
    const restoredDb = new Database(join(target, 'mlflow.db'), {readonly: true})
    try {
      return new Set(restoredDb.prepare('SELECT step FROM metrics').pluck().all() as number[])
    } finally {
      restoredDb.close()
    }
  }
  const acknowledged = (writer: {output: () => string}) =>
    lines(writer).flatMap((line) => (line.ack === undefined ? [] : [{at: line.ack, step: line.step!}]))

  // 1. Frozen for good: the stall is an error in status; a kill while frozen leaves a replica that restores, holding
  // what was acknowledged more than 5 s before the endpoint froze.
  const first = await startWithExtension(python, FROZEN, [db, url, join(work, 'state'), '0'], env)
  await sleep(6000)
  const frozenAt = Date.now() / 1000
  moto.freeze()
  try {
    await waitFor(first, 'a stall while S3 is frozen', (line) =>
      Boolean(line.status?.lastError?.includes('has not answered')),
    )
    await sleep(1000)
  } finally {
    await kill(first)
    moto.thaw()
  }
  const whileFrozen = await restoredSteps('killed-while-frozen')
  const lostBeforeFreeze = acknowledged(first).filter(({at, step}) => at < frozenAt - 5 && !whileFrozen.has(step))
  assert.deepEqual(lostBeforeFreeze, [], 'acknowledged more than 5 s before the freeze, and missing')

  // 2. The restarted process resumes; S3 freezes for 2 s past the stall and thaws: the stall clears, and a kill 6 s
  // after the thaw loses nothing acknowledged more than 5 s before it.
  const resumeAt = Math.max(...acknowledged(first).map(({step}) => step)) + 1
  const second = await startWithExtension(python, FROZEN, [db, url, join(work, 'state'), String(resumeAt)], env)
  let killedAt = 0
  try {
    await sleep(2000)
    moto.freeze()
    try {
      await waitFor(second, 'a stall', (line) => Boolean(line.status?.stalledSeconds))
      await sleep(2000)
    } finally {
      moto.thaw()
    }
    const seenBeforeThaw = lines(second).length
    await waitFor(
      second,
      'the stall cleared after the thaw',
      (line) => line.status?.stalledSeconds === null && line.status.lastError === null,
      seenBeforeThaw,
    )
    await sleep(6000)
  } finally {
    killedAt = await kill(second)
  }
  const afterThaw = await restoredSteps('killed-after-thaw')
  const all = [...acknowledged(first), ...acknowledged(second)]
  const lost = all.filter(({at, step}) => at < killedAt - 5 && !afterThaw.has(step))
  assert.deepEqual(lost, [], 'acknowledged more than 5 s before the kill, and missing')
  t.diagnostic(
    `frozen S3: killed while frozen, ${whileFrozen.size} of ${acknowledged(first).length} restored; ` +
      `after the thaw, ${afterThaw.size} of ${all.length}`,
  )
}

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
  const store = await openStore(url, {env: {...process.env, ...env}})
  const segments = (await listAll(store, 'generations/')).filter(({key}) => key.endsWith('.frames.gz'))
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

/** The extension's environment for an S3 replica in moto: role credentials, and no shared AWS files. */
async function s3Env(moto: Moto): Promise<Record<string, string>> {
  const creds = await moto.assumeRole()
  return {
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_SESSION_TOKEN: creds.sessionToken,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    MLFLOW_S3_ENDPOINT_URL: moto.url,
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
  }
}

describe('replicas in object stores', () => {
  it('S3 (moto, IAM enforced)', async (t) => {
    const venv = cloudVenv('aws')
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const moto = await startMoto('mlflow-replicas')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    await replicaLifeCycle(t, venv!.python, 's3://mlflow-replicas/team-a', await s3Env(moto!))
  })

  it('S3 frozen (moto stopped) around kills: the stall is an error, and the bound holds again after the thaw', async (t) => {
    const venv = cloudVenv('aws')
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const moto = await startMoto('mlflow-frozen')
    if (!requireService(t, Boolean(moto), NO_EMULATORS)) return
    await frozenTargetKillTest(t, venv!.python, moto!, await s3Env(moto!))
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
