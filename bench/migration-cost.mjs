#!/usr/bin/env node
// How long MLflow's schema migrations take on a large local store, and the cost model `upgrade plan` estimates
// them with. Two stores made by the oldest MLflow venv the tests build (2.22): a calibration store of
// `--calibrate` metric rows and a validation store of `--rows` (default 10M over 200 runs, about 1.7 GB). For each,
// the newest venv (3.x):
// - runs `mlflow db upgrade` on a copy, timed (what a user would otherwise run);
// - runs the same migrations revision by revision (alembic, one transaction per revision), timing each.
// The calibration store's per-revision times, divided by the rows of the tables each heavy revision touches
// (catalog/overlay.json "costs"), give seconds per row per kind of operation; `--write` stores them in
// catalog/migration-costs.json. The validation store then compares the model's estimate with `mlflow db upgrade`.
// Usage: node bench/migration-cost.mjs [--rows 10000000] [--calibrate 1000000] [--runs 200] [--write] [--json]
import {execFileSync} from 'node:child_process'
import {copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {arg, root} from './lib.mjs'

const rows = arg('rows', 10_000_000)
const calibrateRows = arg('calibrate', 1_000_000)
const runs = arg('runs', 200)
const write = process.argv.includes('--write')
const cache = join(root, '.cache', 'mlflowctl')
const venvs = JSON.parse(readFileSync(join(cache, 'test-venvs.json'), 'utf8'))
const old = venvs.find((v) => v.mlflowVersion.startsWith('2.'))
const newest = venvs.find((v) => v.mlflowVersion.startsWith('3.'))
const work = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'bench-migration-'))
const overlay = JSON.parse(readFileSync(join(root, 'catalog', 'overlay.json'), 'utf8'))

/** A store at the old MLflow's head: `runs` runs sharing `n` metric rows (20 keys, increasing steps). */
const BUILD = `
import sqlite3, sys, time
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
db, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = SqlAlchemyStore(f"sqlite:///{db}", "/tmp/bench-artifacts")
ids = [store.create_run("0", "bench", 0, [], f"run-{i}").info.run_id for i in range(runs)]
store.engine.dispose()
per_run = n // runs
with sqlite3.connect(db) as c:
    c.execute("PRAGMA journal_mode=OFF")
    c.execute("PRAGMA synchronous=OFF")
    for run in ids:
        c.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, 0.5, ?, ?, ?, 0)",
                      ((f"key-{i % 20}", i, run, i // 20) for i in range(per_run)))
`

/** Applies the pending revisions one at a time (each in its own transaction); prints [revision, seconds] pairs. */
const STEPWISE = `
import json, sys, time
from alembic import command
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config
url = f"sqlite:///{sys.argv[1]}"
config = _get_alembic_config(url)
script = ScriptDirectory.from_config(config)
import sqlite3
current = sqlite3.connect(sys.argv[1]).execute("SELECT version_num FROM alembic_version").fetchone()[0]
pending = [r.revision for r in script.iterate_revisions("heads", current)][::-1]
out = []
for revision in pending:
    started = time.perf_counter()
    command.upgrade(config, revision)
    out.append([revision, time.perf_counter() - started])
print(json.dumps(out))
`

/** The row counts the extension reports (max(rowid)), as upgrade plan reads them. */
const ROWS = `
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
print(json.dumps({t: c.execute(f'SELECT coalesce(max(rowid), 0) FROM "{t}"').fetchone()[0] for t in names if not t.startswith("sqlite_")}))
`

/** What `upgrade plan` waits for on the store: the ops status's schema state, row estimates, tables and has-data, as
 * the deployed (old) extension computes them. */
const STATUS = `
import sys, time
from pathlib import Path
import sqlalchemy
from mlflowctl_extension.migrations import create_engine, inspect_schema, row_estimates
from mlflowctl_extension.transfer import has_data
engine = create_engine(f"sqlite:///{sys.argv[1]}")
# Twice: a running extension has read MLflow's migration scripts at its start already; the second call is what
# the ops status costs it.
for _ in range(2):
    started = time.perf_counter()
    inspect_schema(engine)
    row_estimates(engine)
    sqlalchemy.inspect(engine).get_table_names()
    has_data(Path(sys.argv[1]))
print(time.perf_counter() - started)
`

const seconds = (started) => (performance.now() - started) / 1000
const py = (python, script, args) =>
  execFileSync(python, ['-c', script, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    stdio: ['ignore', 'pipe', 'pipe'],
  })

function buildStore(name, n) {
  const db = join(work, `${name}.db`)
  const started = performance.now()
  py(old.python, BUILD, [db, String(n), String(runs)])
  process.stderr.write(
    `${name}: ${n} metric rows with MLflow ${old.mlflowVersion} in ${seconds(started).toFixed(1)} s, ${(statSync(db).size / 2 ** 30).toFixed(2)} GiB\n`,
  )
  return db
}

/** `mlflow db upgrade` on a copy, timed. */
function mlflowUpgrade(db) {
  const copy = `${db}.upgrade.db`
  copyFileSync(db, copy)
  const started = performance.now()
  execFileSync(join(newest.python, '..', 'mlflow'), ['db', 'upgrade', `sqlite:///${copy}`], {stdio: 'ignore'})
  const elapsed = seconds(started)
  rmSync(copy)
  return elapsed
}

function stepwise(db) {
  const copy = `${db}.steps.db`
  copyFileSync(db, copy)
  const steps = JSON.parse(py(newest.python, STEPWISE, [copy]).trim().split('\n').at(-1))
  rmSync(copy)
  return steps
}

/** Seconds per row for each kind of operation, from the calibration store's timed revisions; `fixed` is what
 * `mlflow db upgrade` takes beyond its revisions (starting Python, importing MLflow and alembic). */
function calibrate(steps, counts, upgradeSeconds) {
  const light = steps.filter(([revision]) => !overlay.costs[revision])
  const perMigration = light.reduce((sum, [, s]) => sum + s, 0) / Math.max(1, light.length)
  const perRow = {}
  for (const [revision, s] of steps) {
    const ops = overlay.costs[revision]
    if (!ops) continue
    const touched = ops.reduce((sum, op) => sum + (counts[op.table] ?? 0), 0)
    if (touched === 0) continue
    // One revision may do several operations of one kind: its time is shared by the rows they touch.
    for (const op of ops) perRow[op.op] = Math.max(perRow[op.op] ?? 0, (s - perMigration) / touched)
  }
  const fixed = Math.max(0, upgradeSeconds - steps.reduce((sum, [, s]) => sum + s, 0))
  return {fixed, perMigration, perRow}
}

/** The model's estimate for a store, as core/migration-estimate.ts computes it. */
function estimate(model, steps, counts) {
  let total = model.fixed
  for (const [revision] of steps) {
    total += model.perMigration
    for (const op of overlay.costs[revision] ?? []) total += (counts[op.table] ?? 0) * (model.perRow[op.op] ?? 0)
  }
  return total
}

try {
  const small = buildStore('calibration', calibrateRows)
  const smallCounts = JSON.parse(py(newest.python, ROWS, [small]))
  const smallSteps = stepwise(small)
  const model = calibrate(smallSteps, smallCounts, mlflowUpgrade(small))
  process.stderr.write(`model from ${calibrateRows} rows: ${JSON.stringify(model)}\n`)
  const large = buildStore('validation', rows)
  const counts = JSON.parse(py(newest.python, ROWS, [large]))
  const statusSeconds = Number(
    execFileSync(old.python, ['-c', STATUS, large], {
      encoding: 'utf8',
      env: {...process.env, PYTHONPATH: join(root, 'templates', 'extension')},
    }).trim(),
  )
  const measured = mlflowUpgrade(large)
  const steps = stepwise(large)
  const predicted = estimate(model, steps, counts)
  const heaviest = [...steps].sort((a, b) => b[1] - a[1]).slice(0, 3)
  const result = {
    machine: `${(await import('node:os')).cpus().length} cores`,
    from: old.mlflowVersion,
    to: newest.mlflowVersion,
    calibrationRows: calibrateRows,
    rows,
    runs,
    revisions: steps.length,
    mlflowDbUpgradeSeconds: Number(measured.toFixed(1)),
    stepwiseSeconds: Number(steps.reduce((sum, [, s]) => sum + s, 0).toFixed(1)),
    estimateSeconds: Number(predicted.toFixed(1)),
    ratio: Number((predicted / measured).toFixed(2)),
    planStatusSeconds: Number(statusSeconds.toFixed(2)),
    heaviest: heaviest.map(([revision, s]) => ({revision, seconds: Number(s.toFixed(1))})),
    model,
  }
  if (write) {
    const file = join(root, 'catalog', 'migration-costs.json')
    const costs = {
      about:
        'Seconds per row for each kind of heavy migration operation, and per light migration, measured by bench/migration-cost.mjs (node bench/migration-cost.mjs --write) on a local SQLite store made by the oldest tested MLflow and migrated revision by revision by the newest. upgrade plan multiplies them by the live row counts. Other dialects are not measured: their estimate uses these numbers and says so.',
      measuredAt: new Date().toISOString().slice(0, 10),
      machine: result.machine,
      from: old.mlflowVersion,
      to: newest.mlflowVersion,
      calibrationRows: calibrateRows,
      sqlite: {
        fixedSeconds: Number(model.fixed.toFixed(2)),
        perMigrationSeconds: Number(model.perMigration.toFixed(4)),
        perRowSeconds: model.perRow,
      },
    }
    writeFileSync(file, `${JSON.stringify(costs, null, 2)}\n`)
    process.stderr.write(`wrote ${file}\n`)
  }
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  else {
    process.stdout.write(
      `MLflow ${result.from} -> ${result.to}, ${rows} metric rows, ${runs} runs, ${result.revisions} revisions\n` +
        `  mlflow db upgrade:  ${result.mlflowDbUpgradeSeconds} s\n` +
        `  revision by revision: ${result.stepwiseSeconds} s (heaviest: ${result.heaviest.map((h) => `${h.revision} ${h.seconds} s`).join(', ')})\n` +
        `  estimate (model from ${calibrateRows} rows): ${result.estimateSeconds} s = ${result.ratio}x the measured time\n` +
        `  the ops status upgrade plan reads, on this store: ${result.planStatusSeconds} s\n`,
    )
  }
} finally {
  if (existsSync(work)) rmSync(work, {recursive: true, force: true})
}
