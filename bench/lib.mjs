// What the benchmarks share: the repository root, numeric flags, and the peak memory of a process tree.
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createServer} from 'node:net'
import {fileURLToPath} from 'node:url'

import Database from 'better-sqlite3'

export const root = fileURLToPath(new URL('..', import.meta.url))

/** `--name N` as a number, or the fallback. */
export const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}

/** A port free on 127.0.0.1 now. */
export const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address()
      server.close(() => resolve(port))
    })
  })

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A process and all its descendants (from /proc). */
export function treePids(pid) {
  const children = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(pid)
      } catch {
        return false
      }
    })
  return [pid, ...children.flatMap((c) => treePids(Number(c)))]
}

/** The sum of the peak RSS (VmHWM) of a process tree, in MiB. */
export const peakRssMiB = (pid) =>
  treePids(pid).reduce((sum, p) => {
    try {
      return sum + Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]) / 1024
    } catch {
      return sum
    }
  }, 0)

/** Waits until `${base}/health` answers 200; fails when `child` exits first, or after `seconds`. */
export async function waitHealthy(base, {child, seconds = 180} = {}) {
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`)
    try {
      if ((await fetch(`${base}/health`)).ok) return
    } catch {
      // not listening yet
    }
    await sleep(200)
  }
  throw new Error(`${base} did not become healthy within ${seconds} s`)
}

/** A caller of MLflow's REST API under `base`: POSTs JSON to /api/2.0/mlflow/PATH, fails on an error answer. */
export const mlflowRest = (base) => async (path, body) => {
  const answer = await fetch(`${base}/api/2.0/mlflow/${path}`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(body),
  })
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status} ${await answer.text()}`)
  return answer.json()
}

/** Bytes under a path (a file, or a directory's files). */
export const sizeOf = (path) =>
  statSync(path).isDirectory()
    ? readdirSync(path).reduce((sum, name) => sum + sizeOf(join(path, name)), 0)
    : statSync(path).size

/**
 * An app-data directory: the schema made by real MLflow (`python`, a test venv's), then 1,000 runs with params and
 * metrics bulk-inserted, and `artifactBytes` of incompressible 4 MiB files. Returns the sizes it made.
 */
export function generateAppData(dir, {python, metricRows, artifactBytes}) {
  mkdirSync(join(dir, 'artifacts'), {recursive: true})
  const dbFile = join(dir, 'mlflow.db')
  execFileSync(
    python,
    [
      '-c',
      `from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; SqlAlchemyStore('sqlite:///${dbFile}', '${join(dir, 'artifacts')}')`,
    ],
    {stdio: 'pipe'},
  )
  const db = new Database(dbFile)
  db.pragma('journal_mode = WAL')
  const runs = 1000
  const keys = 10
  const steps = Math.ceil(metricRows / runs / keys)
  const now = Date.now()
  db.prepare(
    "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (1, 'bench', 'mlflow-artifacts:/1', 'active', ?, ?)",
  ).run(now, now)
  const run = db.prepare(
    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?, ?, 'LOCAL', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, 1)",
  )
  const param = db.prepare('INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)')
  const metric = db.prepare(
    'INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)',
  )
  const latest = db.prepare(
    'INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, 0, ?)',
  )
  const runIds = []
  db.transaction(() => {
    for (let r = 0; r < runs; r++) {
      const id = randomBytes(16).toString('hex')
      runIds.push(id)
      run.run(id, `run-${r}`, now, now + 1000, `mlflow-artifacts:/1/${id}/artifacts`)
      for (let p = 0; p < 10; p++) param.run(`param_${p}`, String(Math.random()), id)
      for (let k = 0; k < keys; k++) {
        for (let s = 0; s < steps; s++) metric.run(`metric_${k}`, Math.random(), now + s, id, s)
        latest.run(`metric_${k}`, Math.random(), now + steps, steps - 1, id)
      }
    }
  })()
  db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
  const fileSize = 4 * 1024 * 1024
  for (let i = 0; i < Math.ceil(artifactBytes / fileSize); i++) {
    const runDir = join(dir, 'artifacts', '1', runIds[i % runs], 'artifacts')
    mkdirSync(runDir, {recursive: true})
    writeFileSync(join(runDir, `weights-${i}.bin`), randomBytes(fileSize)) // model weights do not compress
  }
  return {
    dbBytes: statSync(dbFile).size,
    artifactBytes: sizeOf(join(dir, 'artifacts')),
    metricRows: runs * keys * steps,
  }
}

/**
 * A benchmark's setting: the cache of venvs, the newest 3.x test venv, a fresh work directory (under BENCH_DIR, else
 * the system's temporary directory), the CLI, and the environment that keeps mlflowctl's state inside the work
 * directory.
 */
export function benchSetup(name) {
  const cacheDir = process.env.MLFLOWCTL_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
  const venv = JSON.parse(readFileSync(join(cacheDir, 'test-venvs.json'), 'utf8')).find((v) =>
    v.mlflowVersion.startsWith('3.'),
  )
  const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), `mlflowctl-bench-${name}-`))
  const env = {
    ...process.env,
    MLFLOWCTL_CACHE_DIR: cacheDir,
    MLFLOWCTL_DATA_DIR: join(work, 'state'),
    MLFLOWCTL_CONFIG_DIR: join(work, 'config'),
  }
  return {cacheDir, venv, work, cli: join(root, 'bin', 'run.js'), env}
}
