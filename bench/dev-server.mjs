#!/usr/bin/env node
// mlflowctl dev up vs. `mlflow server` on the same venv and the same SQLite DB:
//  - start: wall seconds from launch to a healthy /health;
//  - requests: median latency of experiments/search, through the proxy vs. direct;
//  - memory: peak RSS (VmHWM) of every process each side runs (MLflow + supervisor/proxy).
// Usage: node bench/dev-server.mjs [--repeat N] [--requests N] [--json]
import {performance} from 'node:perf_hooks'
import {execFileSync, spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {arg, peakRssMiB, root, sleep} from './lib.mjs'

const repeat = arg('repeat', 3)
const requests = arg('requests', 200)
const cacheDir = join(root, '.cache', 'mlflowctl')
const venvs = JSON.parse(readFileSync(join(cacheDir, 'test-venvs.json'), 'utf8'))
const venv = venvs.find((v) => v.mlflowVersion.startsWith('3.')) ?? venvs[0]
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const cli = (args, env) =>
  JSON.parse(
    execFileSync(process.execPath, [join(root, 'bin', 'run.js'), ...args, '--json'], {
      env: {...process.env, ...env},
      encoding: 'utf8',
    }),
  )

async function waitHealthy(url, headers) {
  for (;;) {
    try {
      if ((await fetch(url, {headers})).ok) return
    } catch {
      // not listening yet
    }
    await sleep(50)
  }
}

async function latency(url, headers) {
  const times = []
  for (let i = 0; i < requests; i++) {
    const t = performance.now()
    const r = await fetch(url, {headers})
    await r.arrayBuffer()
    times.push(performance.now() - t)
  }
  return median(times)
}

const work = mkdtempSync(join(tmpdir(), 'bench-dev-'))
const dataDir = join(work, 'data')
const bundle = join(work, 'bundle')
const env = {MLFLOWCTL_CACHE_DIR: cacheDir, MLFLOWCTL_DATA_DIR: dataDir}
cli(['init', bundle, '--mlflow-version', venv.mlflowVersion], env)

const results = {mlflowctl: {start: [], latency: [], rss: []}, baseline: {start: [], latency: [], rss: []}}
for (let i = 0; i < repeat; i++) {
  let t = performance.now()
  const up = cli(['dev', 'up', bundle], env).result
  results.mlflowctl.start.push((performance.now() - t) / 1000)
  const headers = {Authorization: `Key ${up.apiKey}`}
  results.mlflowctl.latency.push(
    await latency(`${up.trackingUri}/api/2.0/mlflow/experiments/search?max_results=10`, headers),
  )
  results.mlflowctl.rss.push(peakRssMiB(up.supervisorPid))
  cli(['dev', 'down', bundle], env)

  // Baseline: what an operator runs by hand, on the same DB file the extension created.
  const db = join(up.dataDir, 'mlflow.db')
  const port = 20000 + Math.floor(Math.random() * 20000)
  t = performance.now()
  const server = spawn(
    venv.python,
    [
      '-m',
      'mlflow',
      'server',
      '--backend-store-uri',
      `sqlite:///${db}`,
      '--artifacts-destination',
      join(up.dataDir, 'artifacts'),
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--workers',
      '1',
    ],
    {stdio: 'ignore', detached: true},
  )
  await waitHealthy(`http://127.0.0.1:${port}/health`, {})
  results.baseline.start.push((performance.now() - t) / 1000)
  results.baseline.latency.push(
    await latency(`http://127.0.0.1:${port}/api/2.0/mlflow/experiments/search?max_results=10`, {}),
  )
  results.baseline.rss.push(peakRssMiB(server.pid))
  process.kill(-server.pid, 'SIGTERM')
  await sleep(1500)
}

const row = (side) => ({
  startSeconds: median(results[side].start),
  medianLatencyMs: median(results[side].latency),
  peakRssMiB: median(results[side].rss),
})
const report = {
  benchmark: 'dev-server',
  mlflowVersion: venv.mlflowVersion,
  node: process.version,
  repeat,
  requests,
  mlflowctl: row('mlflowctl'),
  baseline: row('baseline'),
}
report.ratios = {
  start: report.mlflowctl.startSeconds / report.baseline.startSeconds,
  latency: report.mlflowctl.medianLatencyMs / report.baseline.medianLatencyMs,
  peakRss: report.mlflowctl.peakRssMiB / report.baseline.peakRssMiB,
}
mkdirSync(join(root, 'bench', 'results'), {recursive: true})
writeFileSync(join(root, 'bench', 'results', `dev-server-${Date.now()}.json`), JSON.stringify(report, null, 2))
if (process.argv.includes('--json')) console.log(JSON.stringify(report, null, 2))
else {
  const fmt = (n) => n.toFixed(2)
  console.log(`dev-server: MLflow ${venv.mlflowVersion}, ${repeat} runs, ${requests} requests each (medians)`)
  console.log('side       start_s  latency_ms  peak_rss_MiB')
  for (const side of ['mlflowctl', 'baseline'])
    console.log(
      `${side.padEnd(10)} ${fmt(report[side].startSeconds).padStart(7)}  ${fmt(report[side].medianLatencyMs).padStart(10)}  ${fmt(report[side].peakRssMiB).padStart(12)}`,
    )
  console.log(
    `ratio      ${fmt(report.ratios.start).padStart(7)}  ${fmt(report.ratios.latency).padStart(10)}  ${fmt(report.ratios.peakRss).padStart(12)}`,
  )
}
