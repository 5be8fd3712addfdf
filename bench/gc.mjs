#!/usr/bin/env node
// gc against `mlflow gc`, and what a writer sees while gc runs.
//  1. A local-storage data directory as the extension keeps it (schema made by real MLflow), with `--runs` runs
//     deleted 40 days ago, each with 10 metrics, 2 params and a 1 KiB artifact under mlflow-artifacts:/, beside
//     `--live` live runs. Two copies: `mlflowctl gc --db … --artifacts-source … --yes --no-backup` on one, and on
//     the other `mlflow gc --older-than 30d` with `mlflow server --serve-artifacts` running (mlflow gc resolves
//     mlflow-artifacts:/ only through a server). GNU time: wall seconds and peak RSS of each gc process.
//  2. The extension under uvicorn on a third copy: a REST client logs 10-metric batches, first alone (idle), then
//     while the extension's own gc (POST /_mlflowctl/gc) purges the same deleted runs. p50/p99/max of its requests.
//     The writer's store is smaller (`--writer-runs`): under a writer that never pauses, gc lets every request go
//     first and slows down accordingly.
// Usage: node bench/gc.mjs [--runs 100000] [--live 1000] [--writer-runs 5000] [--idle-seconds 20] [--json]
import {execFileSync, spawn} from 'node:child_process'
import {cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {performance} from 'node:perf_hooks'
import {join} from 'node:path'

import {arg, freePort, mlflowRest, root, waitHealthy} from './lib.mjs'

const runs = arg('runs', 100_000)
const live = arg('live', 1000)
const idleSeconds = arg('idle-seconds', 20)
const writerRuns = arg('writer-runs', 5000)
const venvs = JSON.parse(readFileSync(join(root, '.cache', 'mlflowctl', 'test-venvs.json'), 'utf8'))
const venv = venvs.find((v) => v.mlflowVersion.startsWith('3.'))
const bin = join(venv.python, '..')
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]
const progress = (text) => process.stderr.write(`${text}\n`)
const TOKEN = 'bench-ops-token-0123456789abcdef'

const GENERATE = `
import os, sqlite3, sys, time, uuid
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
data, runs, live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(os.path.join(data, "artifacts"), exist_ok=True)
uri = "sqlite:///" + os.path.join(data, "mlflow.db")
SqlAlchemyStore(uri, "mlflow-artifacts:/")
db = sqlite3.connect(os.path.join(data, "mlflow.db"))
now = int(time.time() * 1000)
db.execute("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (1, 'bench', 'mlflow-artifacts:/1', 'active', ?, ?)", (now, now))
payload = os.urandom(1024)
for start in range(0, runs + live, 5000):
    rows, metrics, latest, params = [], [], [], []
    for i in range(start, min(start + 5000, runs + live)):
        run = uuid.uuid4().hex
        deleted = i < runs
        rows.append((run, "r%d" % i, "LOCAL", "bench", "bench", "FINISHED", now - 41 * 86400000, now - 41 * 86400000, "mlflow-artifacts:/1/%s/artifacts" % run, 1, "deleted" if deleted else "active", now - 40 * 86400000 if deleted else None))
        for k in range(10):
            metrics.append(("m%d" % k, 0.5, now, run, 0, 0))
            latest.append(("m%d" % k, 0.5, now, 0, 0, run))
        params += [("alpha", "0.1", run), ("layers", "3", run)]
        directory = os.path.join(data, "artifacts", "1", run, "artifacts")
        os.makedirs(directory)
        with open(os.path.join(directory, "model.bin"), "wb") as handle:
            handle.write(payload)
    db.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, user_id, status, start_time, end_time, artifact_uri, experiment_id, lifecycle_stage, deleted_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)", metrics)
    db.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", latest)
    db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
    db.commit()
db.close()
`

function timedWithStats(command, args, env) {
  // GNU time writes its line to stderr; execFileSync only returns stdout, so run through a shell that swaps them.
  const started = Date.now()
  const result = execFileSync(
    'bash',
    ['-c', `/usr/bin/time -f '@@time %e %M' "$@" 2>&1 >/dev/null | tail -1`, 'time', command, ...args],
    {
      env: {...process.env, ...env},
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    },
  )
  const match = /@@time ([\d.]+) (\d+)/.exec(result)
  if (!match) throw new Error(`${command} ${args.join(' ')} failed: ${result.slice(-2000)}`)
  return {seconds: Number(match[1]), wallSeconds: (Date.now() - started) / 1000, peakRssMiB: Number(match[2]) / 1024}
}

function left(data) {
  const count = (sql) =>
    Number(
      execFileSync(
        join(bin, 'python'),
        [
          '-c',
          `import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])`,
          join(data, 'mlflow.db'),
          sql,
        ],
        {encoding: 'utf8'},
      ).trim(),
    )
  const runDirs = readdirSync(join(data, 'artifacts', '1')).length
  return {
    runs: count('SELECT count(*) FROM runs'),
    metrics: count('SELECT count(*) FROM metrics'),
    runDirectories: runDirs,
  }
}

async function stop(server) {
  process.kill(-server.pid, 'SIGTERM')
  await new Promise((resolve) => server.once('exit', resolve))
}

const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'bench-gc-'))
try {
  const source = join(work, 'source')
  progress(`generating ${runs} deleted runs and ${live} live ones (10 metrics, 2 params, 1 KiB artifact each)...`)
  execFileSync(join(bin, 'python'), ['-c', GENERATE, source, String(runs), String(live)], {stdio: 'inherit'})
  const served = join(work, 'served')
  execFileSync(join(bin, 'python'), ['-c', GENERATE, served, String(writerRuns), String(live)], {stdio: 'inherit'})
  const copies = Object.fromEntries(
    ['ours', 'theirs'].map((name) => {
      cpSync(source, join(work, name), {recursive: true})
      return [name, join(work, name)]
    }),
  )

  progress('mlflowctl gc...')
  const ours = timedWithStats(process.execPath, [
    join(root, 'bin', 'run.js'),
    'gc',
    '--db',
    `sqlite:///${join(copies.ours, 'mlflow.db')}`,
    '--artifacts-source',
    join(copies.ours, 'artifacts'),
    '--older-than',
    '30d',
    '--yes',
    '--no-backup',
  ])
  const oursLeft = left(copies.ours)

  progress('mlflow gc (with mlflow server --serve-artifacts, which it needs for mlflow-artifacts:/)...')
  const port = await freePort()
  const store = `sqlite:///${join(copies.theirs, 'mlflow.db')}`
  const mlflowServer = spawn(
    join(bin, 'mlflow'),
    [
      'server',
      '--backend-store-uri',
      store,
      '--artifacts-destination',
      join(copies.theirs, 'artifacts'),
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--workers',
      '1',
    ],
    {detached: true, stdio: 'ignore'},
  )
  await waitHealthy(`http://127.0.0.1:${port}`, {child: mlflowServer, seconds: 180})
  const theirs = timedWithStats(join(bin, 'mlflow'), ['gc', '--older-than', '30d', '--backend-store-uri', store], {
    MLFLOW_TRACKING_URI: `http://127.0.0.1:${port}`,
  })
  await stop(mlflowServer)
  const theirsLeft = left(copies.theirs)

  progress("a writer, idle and during the extension's gc...")
  const bundle = join(work, 'bundle')
  cpSync(join(root, 'templates', 'extension'), bundle, {
    recursive: true,
    filter: (path) => !/\/(tests|__pycache__)(\/|$)|\.tmpl$/.test(path),
  })
  const extensionPort = await freePort()
  const extension = spawn(
    join(bin, 'python'),
    ['-m', 'uvicorn', 'app:app', '--host', '127.0.0.1', '--port', String(extensionPort), '--log-level', 'warning'],
    {
      cwd: bundle,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        CONNECT_CONTENT_DATA_DIR: served,
        MLFLOWCTL_OPS_TOKEN: TOKEN,
      },
      detached: true,
      stdio: 'ignore',
    },
  )
  const base = `http://127.0.0.1:${extensionPort}`
  await waitHealthy(base, {child: extension, seconds: 180})
  const call = mlflowRest(base)
  const run = (await call('runs/create', {experiment_id: '1'})).run.info.run_id
  let step = 0
  const write = async (until) => {
    const latencies = []
    while (!until()) {
      const started = performance.now()
      await call('runs/log-batch', {
        run_id: run,
        metrics: Array.from({length: 10}, (_, i) => ({
          key: `w${i}`,
          value: Math.random(),
          timestamp: Date.now(),
          step,
        })),
      })
      latencies.push(performance.now() - started)
      step++
    }
    return latencies
  }
  const idleEnd = Date.now() + idleSeconds * 1000
  const idle = await write(() => Date.now() > idleEnd)
  let gcDone = false
  const gcStarted = Date.now()
  const gcRequest = fetch(`${base}/_mlflowctl/gc`, {
    method: 'POST',
    headers: {
      'X-Mlflowctl-Ops-Token': TOKEN,
      'X-Mlflowctl-Gc': JSON.stringify({olderThanMs: 30 * 86_400_000, yes: true}),
    },
  }).then(async (answer) => {
    const text = await answer.text()
    gcDone = true
    return text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .at(-1)
  })
  const during = await write(() => gcDone)
  const gcResult = await gcRequest
  const gcSeconds = (Date.now() - gcStarted) / 1000
  await stop(extension)

  const summary = (xs) => ({
    requests: xs.length,
    p50: Math.round(quantile(xs, 0.5) * 10) / 10,
    p99: Math.round(quantile(xs, 0.99) * 10) / 10,
    max: Math.round(Math.max(...xs) * 10) / 10,
  })
  const result = {
    runs,
    live,
    writerRuns,
    mlflowVersion: venv.mlflowVersion,
    mlflowctl: {...ours, left: oursLeft},
    mlflowGc: {...theirs, left: theirsLeft},
    timeRatio: Math.round((ours.seconds / theirs.seconds) * 100) / 100,
    writer: {
      idle: summary(idle),
      duringGc: summary(during),
      p99Ratio: Math.round((quantile(during, 0.99) / quantile(idle, 0.99)) * 100) / 100,
      gcSeconds,
      gcDeletedRuns: gcResult.deleted?.runs?.count,
      longestTransactionSeconds: gcResult.longestTransactionSeconds,
    },
  }
  mkdirSync(join(root, 'bench', 'results'), {recursive: true})
  writeFileSync(join(root, 'bench', 'results', `gc-${Date.now()}.json`), JSON.stringify(result, null, 2))
  if (process.argv.includes('--json')) console.log(JSON.stringify(result, null, 2))
  else {
    console.log(`gc of ${runs} deleted runs (10 metrics each) beside ${live} live ones, MLflow ${venv.mlflowVersion}`)
    console.log(
      `  mlflowctl gc: ${ours.seconds} s, peak RSS ${Math.round(ours.peakRssMiB)} MiB; left ${JSON.stringify(oursLeft)}`,
    )
    console.log(
      `  mlflow gc:    ${theirs.seconds} s, peak RSS ${Math.round(theirs.peakRssMiB)} MiB; left ${JSON.stringify(theirsLeft)}`,
    )
    console.log(`  time ratio mlflowctl / mlflow gc: ${result.timeRatio}`)
    console.log(`  writer idle:      ${JSON.stringify(result.writer.idle)} ms`)
    console.log(
      `  writer during gc: ${JSON.stringify(result.writer.duringGc)} ms (gc of ${writerRuns} runs took ${gcSeconds} s, longest transaction ${gcResult.longestTransactionSeconds} s)`,
    )
    console.log(`  p99 during / idle: ${result.writer.p99Ratio}`)
  }
} finally {
  if (!process.env.BENCH_KEEP) rmSync(work, {recursive: true, force: true})
}
