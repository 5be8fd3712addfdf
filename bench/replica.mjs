#!/usr/bin/env node
// Replication's cost and lag: the extension served by uvicorn on local storage, with MLFLOWCTL_REPLICA_URL
// off and on (a directory on the same disk), under the same load: `--clients` REST clients each logging 100-metric
// batches (runs/log-batch) as fast as the server answers, for `--seconds`. Alternates off/on `--repeat` times.
//  - throughput: metrics acknowledged per second, on vs off (target: on ≥ 0.9 × off);
//  - lag (on): for every acknowledged batch, the time from its acknowledgement until the end of the first round that
//    read the WAL after it (segment sidecars: readAt, commitTime): an upper bound on when the batch was in the
//    replica (target: p99 ≤ 5 s);
//  - peak RSS of the server process tree, and the WAL's size at the end.
// "off" is what a deployment without replication runs: SQLite's rollback journal (MLflow's default); "on" sets WAL
// mode, which by itself changes write speed; `--wal-off` also measures off with WAL mode set, to separate the two.
// Usage: node bench/replica.mjs [--seconds 30] [--clients 4] [--repeat 2] [--wal-off] [--json]
import {spawn} from 'node:child_process'
import {cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Database from 'better-sqlite3'

import {arg, freePort, mlflowRest, peakRssMiB, root, sleep, waitHealthy} from './lib.mjs'

const seconds = arg('seconds', 30)
const clients = arg('clients', 4)
const repeat = arg('repeat', 2)
const walOff = process.argv.includes('--wal-off')
const venvs = JSON.parse(readFileSync(join(root, '.cache', 'mlflowctl', 'test-venvs.json'), 'utf8'))
const venv = venvs.find((v) => v.mlflowVersion.startsWith('3.'))
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
const progress = (text) => process.stderr.write(`${text}\n`)

/** One server, one load phase; returns what it measured. */
async function measure(mode, work) {
  const bundle = join(work, `bundle-${mode}`)
  cpSync(join(root, 'templates', 'extension'), bundle, {
    recursive: true,
    filter: (path) => !/\/(tests|__pycache__)(\/|$)|\.tmpl$/.test(path),
  })
  const data = join(work, `data-${mode}`)
  const replica = join(work, `replica-${mode}`)
  mkdirSync(data, {recursive: true})
  if (mode === 'wal-off') {
    // WAL mode set on the file before the server starts (it persists), replication off.
    const db = new Database(join(data, 'mlflow.db'))
    db.pragma('journal_mode = WAL')
    db.close()
  }
  const port = await freePort()
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PYTHONUNBUFFERED: '1',
    CONNECT_CONTENT_DATA_DIR: data,
    ...(mode === 'on' ? {MLFLOWCTL_REPLICA_URL: replica} : {}),
  }
  const server = spawn(
    venv.python,
    ['-m', 'uvicorn', 'app:app', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warning'],
    {cwd: bundle, env, detached: true, stdio: 'ignore'},
  )
  const base = `http://127.0.0.1:${port}`
  await waitHealthy(base, {child: server, seconds: 120})
  const call = mlflowRest(base)
  const experiment = (await call('experiments/create', {name: `bench-${mode}`})).experiment_id
  await sleep(2000) // the replicator's first snapshot (on) happens outside the measured window
  const acks = []
  const began = Date.now()
  const deadline = began + seconds * 1000
  await Promise.all(
    Array.from({length: clients}, async () => {
      const run = (await call('runs/create', {experiment_id: experiment})).run.info.run_id
      let step = 0
      while (Date.now() < deadline) {
        const now = Date.now()
        const metrics = Array.from({length: 100}, (_, i) => ({
          key: 'loss',
          value: Math.random(),
          timestamp: now,
          step: step + i,
        }))
        await call('runs/log-batch', {run_id: run, metrics})
        acks.push(Date.now() / 1000)
        step += 100
      }
    }),
  )
  const elapsed = (Date.now() - began) / 1000
  await sleep(mode === 'on' ? 4000 : 200) // the rounds after the load ship its tail
  const rss = peakRssMiB(server.pid)
  let wal = 0
  try {
    wal = statSync(join(data, 'mlflow.db-wal')).size
  } catch {
    // rollback journal: no WAL
  }
  process.kill(-server.pid, 'SIGTERM')
  await new Promise((resolve) => server.once('exit', resolve))
  const result = {
    mode,
    metricsPerSecond: (acks.length * 100) / elapsed,
    batches: acks.length,
    peakRssMiB: rss,
    walBytes: wal,
  }
  if (mode === 'on') {
    const rounds = []
    for (const generation of readdirSync(join(replica, 'generations')))
      for (const file of readdirSync(join(replica, 'generations', generation, 'wal'), {recursive: true}))
        if (String(file).endsWith('.frames.gz.json'))
          rounds.push(JSON.parse(readFileSync(join(replica, 'generations', generation, 'wal', String(file)), 'utf8')))
    rounds.sort((a, b) => a.readAt - b.readAt)
    const lags = []
    let unshipped = 0
    for (const ack of acks) {
      const round = rounds.find((r) => r.readAt >= ack)
      if (round) lags.push(round.commitTime - ack)
      else unshipped++
    }
    Object.assign(result, {
      lagP50: quantile(lags, 0.5),
      lagP99: quantile(lags, 0.99),
      lagMax: Math.max(...lags),
      unshipped,
      segments: rounds.length,
      generations: readdirSync(join(replica, 'generations')).length,
    })
  }
  rmSync(data, {recursive: true, force: true})
  return result
}

const work = mkdtempSync(join(tmpdir(), 'bench-replica-'))
const modes = walOff ? ['off', 'on', 'wal-off'] : ['off', 'on']
const runs = []
for (let i = 0; i < repeat; i++)
  for (const mode of modes) {
    progress(`${mode} (${i + 1}/${repeat}): ${clients} clients for ${seconds} s...`)
    const result = await measure(mode, join(work, String(i)))
    progress(
      `  ${Math.round(result.metricsPerSecond)} metrics/s${result.lagP99 !== undefined ? `, lag p99 ${result.lagP99.toFixed(2)} s` : ''}`,
    )
    runs.push(result)
  }
rmSync(work, {recursive: true, force: true})
const of = (mode) => runs.filter((r) => r.mode === mode)
const on = of('on')
const report = {
  date: new Date().toISOString(),
  mlflowVersion: venv.mlflowVersion,
  seconds,
  clients,
  repeat,
  offMetricsPerSecond: mean(of('off').map((r) => r.metricsPerSecond)),
  onMetricsPerSecond: mean(on.map((r) => r.metricsPerSecond)),
  ...(walOff ? {walOffMetricsPerSecond: mean(of('wal-off').map((r) => r.metricsPerSecond))} : {}),
  lagP50: quantile(
    on.map((r) => r.lagP50),
    0.5,
  ),
  lagP99: Math.max(...on.map((r) => r.lagP99)),
  lagMax: Math.max(...on.map((r) => r.lagMax)),
  runs,
}
report.ratio = report.onMetricsPerSecond / report.offMetricsPerSecond
mkdirSync(join(root, 'bench', 'results'), {recursive: true})
writeFileSync(join(root, 'bench', 'results', `replica-${Date.now()}.json`), JSON.stringify(report, null, 2))
if (process.argv.includes('--json')) console.log(JSON.stringify(report, null, 2))
else {
  console.log(
    `replication off: ${Math.round(report.offMetricsPerSecond)} metrics/s; on: ${Math.round(report.onMetricsPerSecond)} metrics/s (ratio ${report.ratio.toFixed(3)}, target ≥ 0.9)`,
  )
  if (walOff) console.log(`off with WAL mode: ${Math.round(report.walOffMetricsPerSecond)} metrics/s`)
  console.log(
    `lag (on): p50 ${report.lagP50.toFixed(2)} s, p99 ${report.lagP99.toFixed(2)} s (target ≤ 5 s), max ${report.lagMax.toFixed(2)} s`,
  )
  for (const r of runs)
    console.log(
      `  ${r.mode}: ${Math.round(r.metricsPerSecond)} metrics/s, ${r.batches} batches, peak RSS ${Math.round(r.peakRssMiB)} MiB, WAL ${(r.walBytes / 2 ** 20).toFixed(1)} MiB${r.segments ? `, ${r.segments} segments, ${r.generations} generation(s), ${r.unshipped} unshipped` : ''}`,
    )
}
