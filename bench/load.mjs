#!/usr/bin/env node
// A team's concurrent load on one process: `--clients` REST clients for `--seconds` (bench/load-client.mjs:
// runs, metric batches, tags, 64 KiB artifacts through the proxy, searches), against, in one run and on the same
// machine:
//  - plain `mlflow server` (the newest MLflow venv, uvicorn, one worker: Connect runs one process for local storage),
//    with the same layout (SQLite file and an artifacts directory);
//  - the extension as python-fastapi (uvicorn) and as python-api (gunicorn gthread, 20 threads), local storage;
//  - the extension as python-fastapi with PostgreSQL (custom storage), when MLFLOWCTL_TEST_PG_URL is set;
//  - with --before, the extension as it was before those settings (git commit BEFORE: SQLAlchemy's default pool of 5 + 10,
//    anyio's 40 handler threads, every request through MLflow's FastAPI app) in both app modes, for the comparison
//    in one run.
// Reports requests/s, p50/p99 latency, failed requests, acknowledged writes lost, and the server's peak RSS.
// Usage: node bench/load.mjs [--clients 32] [--seconds 60] [--before] [--only NAME[,NAME]] [--json]
// (MLFLOWCTL_HANDLER_THREADS=N in the environment runs the extension with that bound, to compare bounds.)
import {execSync, spawn} from 'node:child_process'
import {cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Database from 'better-sqlite3'
import pg from 'pg'

import {lostWrites, quantile, runLoad} from './load-client.mjs'
import {appCommand} from '../dist/adapters/dev/app-command.js'
import {arg, freePort, peakRssMiB, root, sleep} from './lib.mjs'

const clients = arg('clients', 32)
const seconds = arg('seconds', 60)
const onlyAt = process.argv.indexOf('--only')
const only = onlyAt === -1 ? undefined : process.argv[onlyAt + 1].split(',')
const venvs = JSON.parse(readFileSync(join(root, '.cache', 'mlflowctl', 'test-venvs.json'), 'utf8'))
const venv = venvs.find((v) => v.mlflowVersion.startsWith('3.'))
const pgUrl = process.env.MLFLOWCTL_TEST_PG_URL
const progress = (text) => process.stderr.write(`${text}\n`)

// The extension as it was before the start-up, pool, handler-thread and routing changes, for --before.
const BEFORE = 'a2f504d'

/** The extension as `mlflowctl init` renders it for this MLflow (or as it was at BEFORE), with its app mode recorded. */
function extensionBundle(work, appMode, before) {
  const bundle = join(work, `bundle-${appMode}${before ? '-before' : ''}`)
  let source = join(root, 'templates', 'extension')
  if (before) {
    source = join(work, 'before')
    if (!existsSync(source)) {
      mkdirSync(source)
      execSync(
        `git -C ${JSON.stringify(root)} archive ${BEFORE} templates/extension | tar -x -C ${JSON.stringify(source)}`,
      )
    }
    source = join(source, 'templates', 'extension')
  }
  cpSync(source, bundle, {recursive: true, filter: (path) => !/\/(tests|__pycache__)(\/|$)|\.tmpl$/.test(path)})
  return bundle
}

async function startServer(name, work) {
  const data = join(work, `data-${name}`)
  mkdirSync(data, {recursive: true})
  const port = await freePort()
  const base = {PATH: process.env.PATH, HOME: process.env.HOME, PYTHONUNBUFFERED: '1'}
  let command
  let env
  let cwd = work
  let store = {kind: 'sqlite', path: join(data, 'mlflow.db'), artifacts: join(data, 'artifacts')}
  if (name === 'mlflow server') {
    command = [
      join(venv.python, '..', 'mlflow'),
      'server',
      '--backend-store-uri',
      `sqlite:///${store.path}`,
      '--artifacts-destination',
      store.artifacts,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--workers',
      '1',
    ]
    env = base
  } else {
    const appMode = name.includes('python-api') ? 'python-api' : 'python-fastapi'
    cwd = extensionBundle(work, `${appMode}-${name.includes('PostgreSQL') ? 'pg' : 'local'}`, name.includes('before'))
    // The bundle's app mode decides the interface, as manifest.json does on Connect.
    const info = {mlflowVersion: venv.mlflowVersion, appMode}
    writeFileSync(join(cwd, 'mlflowctl.json'), JSON.stringify(info))
    command = [venv.python, ...appCommand(appMode, port)]
    // An operator's bound on the handlers at once (the extension's default when unset), to compare bounds.
    const threads = process.env.MLFLOWCTL_HANDLER_THREADS
    env = {...base, CONNECT_CONTENT_DATA_DIR: data, ...(threads ? {MLFLOWCTL_HANDLER_THREADS: threads} : {})}
    if (name.includes('PostgreSQL')) {
      const database = `bench_load_${Date.now()}`
      const admin = new pg.Client({connectionString: pgUrl})
      await admin.connect()
      await admin.query(`CREATE DATABASE ${database}`)
      await admin.end()
      const url = new URL(pgUrl)
      url.pathname = `/${database}`
      store = {kind: 'postgresql', url: url.toString(), database, artifacts: join(data, 'artifacts')}
      env = {
        ...base,
        MLFLOW_BACKEND_STORE_URI: url.toString().replace(/^postgresql:/, 'postgresql+psycopg:'),
        MLFLOW_ARTIFACTS_DESTINATION: store.artifacts,
      }
    }
  }
  const server = spawn(command[0], command.slice(1), {cwd, env, detached: true, stdio: 'ignore'})
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) break
    } catch {
      // not listening yet
    }
    if (i > 900) throw new Error(`${name} did not start`)
    await sleep(200)
  }
  return {server, url, store}
}

async function counters(store) {
  if (store.kind === 'sqlite') {
    const db = new Database(store.path, {readonly: true})
    const rows = db.prepare('SELECT count(*) FROM metrics WHERE run_uuid = ?').pluck()
    return {
      metricRows: async (runId) => rows.get(runId),
      close: async () => db.close(),
    }
  }
  const client = new pg.Client({connectionString: store.url})
  await client.connect()
  return {
    metricRows: async (runId) =>
      Number((await client.query('SELECT count(*) AS n FROM metrics WHERE run_uuid = $1', [runId])).rows[0].n),
    close: async () => {
      await client.end()
      const admin = new pg.Client({connectionString: pgUrl})
      await admin.connect()
      await admin.query(`DROP DATABASE IF EXISTS ${store.database} WITH (FORCE)`)
      await admin.end()
    },
  }
}

async function measure(name, work) {
  progress(`${name}: starting`)
  const {server, url, store} = await startServer(name, work)
  try {
    progress(`${name}: ${clients} clients for ${seconds} s`)
    const load = await runLoad({baseUrl: url, clients, seconds})
    const rss = peakRssMiB(server.pid)
    const count = await counters(store)
    const lost = await lostWrites(load.runs, count.metricRows, async (runId) =>
      existsSync(join(store.artifacts, '0', runId, 'artifacts', 'blob.bin')),
    )
    await count.close()
    const reasons = {}
    for (const failure of load.failures) {
      const key = `${failure.what}: ${failure.detail.slice(0, 90)}`
      reasons[key] = (reasons[key] ?? 0) + 1
    }
    return {
      server: name,
      requestsPerSecond: Number((load.requests / load.seconds).toFixed(1)),
      p50ms: Math.round(quantile(load.latencies, 0.5)),
      p99ms: Math.round(quantile(load.latencies, 0.99)),
      failed: load.failures.length,
      lost: lost.length,
      runs: load.runs.size,
      peakRssMiB: Math.round(rss),
      failures: reasons,
    }
  } finally {
    process.kill(-server.pid, 'SIGTERM')
    await new Promise((resolve) => server.once('exit', resolve))
  }
}

const names = [
  'mlflow server',
  ...(process.argv.includes('--before')
    ? [`extension python-fastapi, before (${BEFORE})`, `extension python-api, before (${BEFORE})`]
    : []),
  'extension python-fastapi',
  'extension python-api',
  ...(pgUrl ? ['extension python-fastapi, PostgreSQL'] : []),
].filter((name) => !only || only.some((wanted) => name.includes(wanted)))
const work = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'bench-load-'))
try {
  const results = []
  for (const name of names) {
    results.push(await measure(name, work))
    progress(JSON.stringify(results.at(-1)))
  }
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
  else {
    process.stdout.write(
      `${clients} clients, ${seconds} s, MLflow ${venv.mlflowVersion}, one process each\n` +
        '| server | requests/s | p50 | p99 | failed | lost | peak RSS |\n|---|---|---|---|---|---|---|\n' +
        results
          .map(
            (r) =>
              `| ${r.server} | ${r.requestsPerSecond} | ${r.p50ms} ms | ${r.p99ms} ms | ${r.failed} | ${r.lost} | ${r.peakRssMiB} MiB |`,
          )
          .join('\n') +
        '\n',
    )
    for (const r of results)
      for (const [reason, n] of Object.entries(r.failures)) process.stdout.write(`  ${r.server}: ${n} × ${reason}\n`)
  }
} finally {
  rmSync(work, {recursive: true, force: true})
}
