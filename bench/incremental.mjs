#!/usr/bin/env node
// Nightly backups into a snapshot repository against what an operator would otherwise run, in one run:
//   restic (Debian package, repository version 2: zstd) and `sqlite3 .backup` + `tar -I pigz` (parallel gzip).
// On the bench's scale-1 data (10M metric rows, 1 GiB of incompressible 4 MiB artifacts, plus 1,000 small files):
//   1. first backup: time and peak RSS (and the peak RSS at half the size: it must stay flat)
//   2. second backup, nothing changed: time and bytes added
//   3. after 1% more metric rows and 10 new 4 MiB artifacts: bytes added
//   4. restore of the latest snapshot into a new directory (mlflowctl restores a checked store; restic restores files)
//   5. 30 daily backups with 1% more rows and 3 new 4 MiB artifacts a day, then keep the newest 7 (one backup a day,
//      so the same 7 as --keep-daily 7): repository sizes after `backup prune` and `restic forget --prune`
//   6. artifacts in S3 (moto on loopback): 2,000 objects, a second backup with none changed: the object GETs counted
//      from moto's request log, and the time against the first
// Each timing is one run (GNU time: wall seconds and the peak RSS of the largest process). Not a test: it never fails
// a build. Needs: npm run build, the test venvs and the emulators venv (node scripts/provision.mjs), restic, pigz,
// sqlite3 and /usr/bin/time (Debian packages).
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, openSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import Database from 'better-sqlite3'

import {benchSetup, freePort, generateAppData, root, sizeOf, sleep} from './lib.mjs'

const scale = Number(process.argv.find((a) => a.startsWith('--scale='))?.split('=')[1] ?? 1)
const days = Number(process.argv.find((a) => a.startsWith('--days='))?.split('=')[1] ?? 30)
const setup = benchSetup('incremental')
const {cacheDir, venv, work, cli} = setup
const emulators = JSON.parse(readFileSync(join(cacheDir, 'emulators.json'), 'utf8')).python
const env = {...setup.env, RESTIC_PASSWORD: 'bench'}
for (const tool of ['restic', 'pigz', 'sqlite3', '/usr/bin/time'])
  if (spawnSync('bash', ['-c', `command -v ${tool}`]).status !== 0)
    throw new Error(`${tool} is missing (apt-get install restic pigz sqlite3 time)`)

/** Runs a shell command under GNU time once the disk is quiet: {seconds, peakMiB, stdout}. */
function measure(label, command, extraEnv = {}) {
  execFileSync('sync')
  const timing = join(work, 'time.txt')
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', timing, 'bash', '-c', command], {
    env: {...env, ...extraEnv},
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  })
  if (result.status !== 0)
    throw new Error(`${label} failed (${result.status}): ${result.stderr.toString().slice(-2000)}`)
  const [seconds, kib] = readFileSync(timing, 'utf8').trim().split('\n').at(-1).split(' ').map(Number)
  const measured = {seconds, peakMiB: Math.round(kib / 1024), stdout: result.stdout.toString()}
  process.stderr.write(`  ${label}: ${seconds}s, ${measured.peakMiB} MiB\n`)
  return measured
}

/** 1% more metric rows (10 new runs), written as MLflow's server would (WAL, no forced checkpoint). */
function addRows(dir, rows) {
  const db = new Database(join(dir, 'mlflow.db'))
  db.pragma('journal_mode = WAL')
  const now = Date.now()
  const run = db.prepare(
    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?, ?, 'LOCAL', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, 1)",
  )
  const metric = db.prepare(
    'INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)',
  )
  const perRun = Math.ceil(rows / 10)
  db.transaction(() => {
    for (let r = 0; r < 10; r++) {
      const id = randomBytes(16).toString('hex')
      run.run(id, `day-${now}-${r}`, now, now + 1, `mlflow-artifacts:/1/${id}/artifacts`)
      for (let i = 0; i < perRun; i++) metric.run(`metric_${i % 10}`, Math.random(), now + i, id, Math.floor(i / 10))
    }
  })()
  db.close()
}

let added = 0
function addArtifacts(dir, count) {
  const runDir = join(dir, 'artifacts', '1', 'added', 'artifacts')
  mkdirSync(runDir, {recursive: true})
  for (let i = 0; i < count; i++) writeFileSync(join(runDir, `new-${added++}.bin`), randomBytes(4 * 1024 * 1024))
}

const ours = (args) => `node ${cli} ${args} --json`
const results = {scale, days, measures: {}}
const dir = join(work, 'app-data')
const repo = join(work, 'repo')
const resticRepo = join(work, 'restic')
const restic = (args) => `restic -q -r ${resticRepo} ${args}`
const metricRows = Math.round(10_000_000 * scale)

process.stderr.write(`Generating ${metricRows} metric rows, ${scale} GiB of artifacts and 1,000 small files...\n`)
const data = generateAppData(dir, {python: venv.python, metricRows, artifactBytes: 1024 ** 3 * scale})
const small = join(dir, 'artifacts', '1', 'small', 'artifacts')
mkdirSync(small, {recursive: true})
for (let i = 0; i < 1000; i++) writeFileSync(join(small, `params-${i}.json`), JSON.stringify({i, value: Math.random()}))
results.data = {...data, smallFiles: 1000}
execFileSync('bash', ['-c', restic('init --repository-version 2')], {env})

// 1. First backup.
const first = {
  mlflowctl: measure('mlflowctl first backup', ours(`backup create --source ${dir} --repo ${repo}`)),
  restic: measure('restic first backup', restic(`backup ${dir}`)),
  pigz: measure(
    'sqlite3 .backup + tar -I pigz',
    `sqlite3 ${dir}/mlflow.db ".backup ${work}/snap.db" && tar -I pigz -cf ${work}/baseline.tgz -C ${work} snap.db -C ${dir} artifacts && rm ${work}/snap.db`,
  ),
}
const firstBytes = {mlflowctl: sizeOf(repo), restic: sizeOf(resticRepo), pigz: sizeOf(join(work, 'baseline.tgz'))}
rmSync(join(work, 'baseline.tgz'))
results.measures.first = {
  seconds: {mlflowctl: first.mlflowctl.seconds, restic: first.restic.seconds, sqlite3PlusPigz: first.pigz.seconds},
  peakMiB: {mlflowctl: first.mlflowctl.peakMiB, restic: first.restic.peakMiB, sqlite3PlusPigz: first.pigz.peakMiB},
  bytes: firstBytes,
  ratioToRestic: first.mlflowctl.seconds / first.restic.seconds,
  ratioToPigz: first.mlflowctl.seconds / first.pigz.seconds,
}

// 2. Nothing changed.
const before2 = {mlflowctl: sizeOf(repo), restic: sizeOf(resticRepo)}
const second = {
  mlflowctl: measure('mlflowctl second backup (unchanged)', ours(`backup create --source ${dir} --repo ${repo}`)),
  restic: measure('restic second backup (unchanged)', restic(`backup ${dir}`)),
}
results.measures.unchanged = {
  seconds: {mlflowctl: second.mlflowctl.seconds, restic: second.restic.seconds},
  bytesAdded: {mlflowctl: sizeOf(repo) - before2.mlflowctl, restic: sizeOf(resticRepo) - before2.restic},
  ratioToRestic: second.mlflowctl.seconds / second.restic.seconds,
  shareOfOwnFirst: second.mlflowctl.seconds / first.mlflowctl.seconds,
  bytesShareOfFirst: (sizeOf(repo) - before2.mlflowctl) / firstBytes.mlflowctl,
}

// 3. 1% more rows and 10 new 4 MiB artifacts.
addRows(dir, metricRows / 100)
addArtifacts(dir, 10)
const before3 = {mlflowctl: sizeOf(repo), restic: sizeOf(resticRepo)}
const third = {
  mlflowctl: measure(
    'mlflowctl backup after 1% more rows + 10 artifacts',
    ours(`backup create --source ${dir} --repo ${repo}`),
  ),
  restic: measure('restic backup after the same change', restic(`backup ${dir}`)),
}
const changedBytes = {mlflowctl: sizeOf(repo) - before3.mlflowctl, restic: sizeOf(resticRepo) - before3.restic}
results.measures.changed = {
  seconds: {mlflowctl: third.mlflowctl.seconds, restic: third.restic.seconds},
  bytesAdded: changedBytes,
  ratioToRestic: changedBytes.mlflowctl / changedBytes.restic,
}

// 4. Restore the latest into a new directory.
const restored = {
  mlflowctl: measure(
    'mlflowctl restore latest',
    ours(`backup restore latest --repo ${repo} --to ${work}/restored --yes`),
  ),
  restic: measure('restic restore latest', restic(`restore latest --target ${work}/restic-restored`)),
}
rmSync(join(work, 'restored'), {recursive: true, force: true})
rmSync(join(work, 'restic-restored'), {recursive: true, force: true})
results.measures.restore = {
  seconds: {mlflowctl: restored.mlflowctl.seconds, restic: restored.restic.seconds},
  peakMiB: {mlflowctl: restored.mlflowctl.peakMiB, restic: restored.restic.peakMiB},
  ratioToRestic: restored.mlflowctl.seconds / restored.restic.seconds,
}

// 5. 30 days, then keep the newest 7.
const daily = {mlflowctl: 0, restic: 0}
for (let day = 0; day < days; day++) {
  addRows(dir, metricRows / 100)
  addArtifacts(dir, 3)
  daily.mlflowctl += measure(`day ${day + 1}: mlflowctl`, ours(`backup create --source ${dir} --repo ${repo}`)).seconds
  daily.restic += measure(`day ${day + 1}: restic`, restic(`backup ${dir}`)).seconds
}
const beforePrune = {mlflowctl: sizeOf(repo), restic: sizeOf(resticRepo)}
const pruned = {
  mlflowctl: measure(
    'mlflowctl backup prune --keep-last 7 --yes',
    ours(`backup prune --repo ${repo} --keep-last 7 --yes`),
  ),
  restic: measure('restic forget --keep-last 7 --prune', restic('forget --keep-last 7 --prune')),
}
const afterPrune = {mlflowctl: sizeOf(repo), restic: sizeOf(resticRepo)}
results.measures.retention = {
  dailySeconds: daily,
  beforePrune,
  afterPrune,
  pruneSeconds: {mlflowctl: pruned.mlflowctl.seconds, restic: pruned.restic.seconds},
  ratioToRestic: afterPrune.mlflowctl / afterPrune.restic,
}

// 1b. Peak RSS at half the size (it must not grow with the store).
const half = join(work, 'half')
generateAppData(half, {python: venv.python, metricRows: metricRows / 2, artifactBytes: (1024 ** 3 * scale) / 2})
const halfRun = measure(
  'mlflowctl first backup at half size',
  ours(`backup create --source ${half} --repo ${work}/half-repo`),
)
results.measures.first.peakMiBAtHalfSize = halfRun.peakMiB
rmSync(half, {recursive: true, force: true})

// 6. Artifacts in S3 (moto): 2,000 unchanged objects.
const port = await freePort()
// moto's request log goes to a file: the measurements block this process, which could not drain a pipe meanwhile.
const motoLog = join(work, 'moto.log')
const logFd = openSync(motoLog, 'w')
const moto = spawn(emulators, ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
  stdio: ['ignore', logFd, logFd],
})
try {
  for (let waited = 0; waited < 300; waited++) {
    const up = await fetch(`http://127.0.0.1:${port}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    )
    if (up) break
    await sleep(100)
  }
  const s3 = {
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_REGION: 'us-east-1',
    MLFLOW_S3_ENDPOINT_URL: `http://127.0.0.1:${port}`,
  }
  execFileSync(
    emulators,
    [
      '-c',
      'import boto3,sys,os\ns3=boto3.client("s3",endpoint_url=sys.argv[1],region_name="us-east-1",aws_access_key_id="bench",aws_secret_access_key="bench")\ns3.create_bucket(Bucket="bench-artifacts")\nfor i in range(2000): s3.put_object(Bucket="bench-artifacts",Key=f"mlflow/1/r{i%50:02d}/artifacts/file-{i}.json",Body=os.urandom(8192))',
      s3.MLFLOW_S3_ENDPOINT_URL,
    ],
    {stdio: 'pipe'},
  )
  const small = join(work, 's3-source')
  mkdirSync(small)
  execFileSync(
    venv.python,
    [
      '-c',
      `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; SqlAlchemyStore('sqlite:///${small}/mlflow.db', '/tmp')`,
    ],
    {stdio: 'pipe'},
  )
  const objectGets = () =>
    readFileSync(motoLog, 'utf8')
      .split('\n')
      .filter((line) => /"GET \/bench-artifacts\/mlflow\/[^?" ]+(\?x-id=GetObject)? HTTP/.test(line)).length
  const args = `backup create --source sqlite:///${small}/mlflow.db --artifacts-source s3://bench-artifacts/mlflow --repo ${work}/s3-repo`
  const gets0 = objectGets()
  const s3First = measure('mlflowctl first backup, 2,000 objects in S3', ours(args), s3)
  const gets1 = objectGets()
  const s3Second = measure('mlflowctl second backup, 2,000 unchanged objects', ours(args), s3)
  const gets2 = objectGets()
  results.measures.s3 = {
    objects: 2000,
    getsFirst: gets1 - gets0,
    getsSecond: gets2 - gets1,
    seconds: {first: s3First.seconds, second: s3Second.seconds},
    secondShareOfFirst: s3Second.seconds / s3First.seconds,
  }
} finally {
  moto.kill()
}

mkdirSync(join(root, 'bench', 'results'), {recursive: true})
const out = join(root, 'bench', 'results', `incremental-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
process.stderr.write(`Results in ${out}; work directory ${work} (remove it when done).\n`)
