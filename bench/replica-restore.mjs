#!/usr/bin/env node
// How a restore from a replica grows with its segments: a replica whose generation holds `--segments`
// segments (one small MLflow commit per round, the extension's Replicator, real MLflow schema), restored with
// `backup restore --from-replica` into a new app-data directory, against `tar xzf` of the same database (what
// restoring last night's `sqlite3 .backup` + `tar czf` costs). Directory replica by default; `--s3` puts it in moto
// (an emulator on loopback: no network latency, so a real bucket is slower per request).
// One round per simulated second; compaction (merging segments older than a minute) as the extension runs it, or off
// with --no-compaction. Usage: node bench/replica-restore.mjs [--segments 2000] [--s3] [--no-compaction] [--json]
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {arg, root} from './lib.mjs'
import {performance} from 'node:perf_hooks'

const segments = arg('segments', 2000)
const s3 = process.argv.includes('--s3')
const compaction = !process.argv.includes('--no-compaction')
const cache = join(root, '.cache', 'mlflowctl')
const venv = JSON.parse(readFileSync(join(cache, s3 ? 'cloud-venvs.json' : 'test-venvs.json'), 'utf8'))
const python = s3 ? venv.aws.python : venv.find((v) => v.mlflowVersion.startsWith('3.')).python
const work = mkdtempSync(join(tmpdir(), 'bench-replica-restore-'))
const env = {...process.env, PYTHONPATH: join(root, 'templates', 'extension')}
let moto
if (s3) {
  const emulators = JSON.parse(readFileSync(join(cache, 'emulators.json'), 'utf8')).python
  const port = 5600 + Math.floor(Math.random() * 300)
  moto = spawnSync('bash', ['-c', `${emulators} -m moto.server -H 127.0.0.1 -p ${port} >/dev/null 2>&1 & echo $!`], {
    encoding: 'utf8',
  }).stdout.trim()
  Object.assign(env, {
    MLFLOW_S3_ENDPOINT_URL: `http://127.0.0.1:${port}`,
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
  })
  execFileSync(
    python,
    [
      '-c',
      `import time,boto3\nfor _ in range(100):\n    try:\n        boto3.client("s3", endpoint_url="${env.MLFLOW_S3_ENDPOINT_URL}").create_bucket(Bucket="bench"); break\n    except Exception: time.sleep(0.2)`,
    ],
    {env},
  )
}
const replica = s3 ? 's3://bench/replica' : join(work, 'replica')
const build = `
import sqlite3, sys, random
from pathlib import Path
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflowctl_extension.replicator import Replicator
db, replica, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "artifacts"))
writer = sqlite3.connect(db, isolation_level=None)
experiment = writer.execute("INSERT INTO experiments (name, artifact_location, lifecycle_stage) VALUES ('bench', 'x', 'active')").lastrowid
import time
# One round per simulated second of writes (so compaction sees segments age as they would), ending now.
clock = [time.time() - n]
replicator = Replicator(db, replica, now=lambda: clock[0], **({"compact_segments": 10**9} if sys.argv[4] == "off" else {}))
replicator.ship()
for i in range(n):
    writer.execute("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?)", (f"k{i}", "v" * random.randint(10, 400), experiment))
    clock[0] += 1
    replicator.ship()
replicator.close()
print(replicator.compacted)
`
const t0 = performance.now()
const compacted = Number(
  execFileSync(python, ['-c', build, join(work, 'mlflow.db'), replica, String(segments), compaction ? 'on' : 'off'], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .trim()
    .split('\n')
    .at(-1),
)
const buildSeconds = (performance.now() - t0) / 1000
const cli = (args) =>
  spawnSync(process.execPath, [join(root, 'bin', 'run.js'), ...args, '--json'], {env, encoding: 'utf8'})
const t1 = performance.now()
const restored = cli(['backup', 'restore', '--from-replica', replica, '--to', join(work, 'restored')])
const restoreSeconds = (performance.now() - t1) / 1000
if (restored.status !== 0) throw new Error(`restore failed: ${restored.stdout}\n${restored.stderr}`)
// Baseline: last night's archive of the same database, unpacked.
execFileSync('tar', ['czf', join(work, 'nightly.tar.gz'), '-C', work, 'mlflow.db'])
mkdirSync(join(work, 'untar'))
const t2 = performance.now()
execFileSync('tar', ['xzf', join(work, 'nightly.tar.gz'), '-C', join(work, 'untar')])
const tarSeconds = (performance.now() - t2) / 1000
if (moto) spawnSync('kill', [moto])
rmSync(work, {recursive: true, force: true})
const report = {
  date: new Date().toISOString(),
  store: s3 ? 'moto S3' : 'directory',
  segments,
  buildSeconds,
  restoreSeconds,
  tarSeconds,
}
mkdirSync(join(root, 'bench', 'results'), {recursive: true})
writeFileSync(join(root, 'bench', 'results', `replica-restore-${Date.now()}.json`), JSON.stringify(report, null, 2))
console.log(
  process.argv.includes('--json')
    ? JSON.stringify(report, null, 2)
    : `${report.store}: ${segments} rounds, ${compacted} segments merged (built in ${buildSeconds.toFixed(1)} s); restore --from-replica ${restoreSeconds.toFixed(1)} s (${((restoreSeconds / segments) * 1000).toFixed(1)} ms per segment); tar xzf of the same database ${tarSeconds.toFixed(2)} s`,
)
