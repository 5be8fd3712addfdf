#!/usr/bin/env node
// Backup and restore against the tools an operator would otherwise use, in one run:
//   1. backup create (app-data)       vs  sqlite3 .backup + tar czf        (at half and full size: RSS must stay flat)
//   2. restore SQLite backup → PG     vs  pgloader (SQLite → PostgreSQL)
//   3. backup create --source PG      vs  pg_dump -Fc                        (database only: --artifacts none)
//   4. restore PG backup → empty PG   vs  pg_restore into an empty database
// Each timing is one run of each tool (the data is large); wall time and the peak RSS of the largest process
// come from GNU time. Full size: 10M metric rows and 1 GiB of incompressible artifacts (--scale to change).
//
// Needs: npm run build, the test venvs (node scripts/provision.mjs), PostgreSQL (MLFLOWCTL_TEST_PG_URL, an
// admin URL), sqlite3, pgloader and /usr/bin/time (Debian packages). Not a test: it never fails a build.
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {benchSetup, generateAppData, sizeOf} from './lib.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
/** --skip-postgres: the SQLite and app-data measurements only (no pgloader, no PostgreSQL needed). */
const skipPostgres = process.argv.includes('--skip-postgres')
class SkipRest extends Error {}
const scale = Number(process.argv.find((a) => a.startsWith('--scale='))?.split('=')[1] ?? 1)
const pgAdmin = process.env.MLFLOWCTL_TEST_PG_URL
const {venv, work, cli, env} = benchSetup('backup')

for (const tool of skipPostgres
  ? ['sqlite3', '/usr/bin/time']
  : ['sqlite3', 'pgloader', 'pg_dump', 'pg_restore', '/usr/bin/time']) {
  if (spawnSync('bash', ['-c', `command -v ${tool}`]).status !== 0)
    throw new Error(`${tool} is missing (apt-get install sqlite3 pgloader postgresql-client time)`)
}
if (!pgAdmin && !skipPostgres) throw new Error('MLFLOWCTL_TEST_PG_URL is not set')

/**
 * Waits until the machine is quiet before a measurement: dirty pages written out (`sync`), and PostgreSQL's own
 * work after the previous step's bulk load done (a CHECKPOINT, then no autovacuum worker analysing the new tables).
 * Without it the first restore into PostgreSQL shared both cores with autovacuum of the 10M-row tables just loaded
 * (64 s in one run, 44 s in the next with the same archive).
 */
function settle() {
  execFileSync('sync')
  if (skipPostgres) return
  execFileSync('psql', [pgAdmin, '-q', '-c', 'CHECKPOINT'], {stdio: 'pipe'})
  for (let waited = 0; waited < 300; waited++) {
    const busy = execFileSync(
      'psql',
      [pgAdmin, '-tA', '-c', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"],
      {encoding: 'utf8'},
    ).trim()
    if (busy === '0') return
    execFileSync('sleep', ['1'])
  }
}

/** Runs a shell command under GNU time, once the machine is quiet: {seconds, peakMiB}. */
function measure(label, command) {
  settle()
  const timing = join(work, 'time.txt')
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', timing, 'bash', '-c', command], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  })
  if (result.status !== 0)
    throw new Error(`${label} failed (${result.status}): ${result.stderr.toString().slice(-2000)}`)
  const [seconds, kib] = readFileSync(timing, 'utf8').trim().split('\n').at(-1).split(' ').map(Number)
  process.stderr.write(`  ${label}: ${seconds.toFixed(1)} s, ${(kib / 1024).toFixed(0)} MiB\n`)
  return {seconds, peakMiB: kib / 1024, stdout: result.stdout.toString()}
}

const pgUrl = (name) => Object.assign(new URL(pgAdmin), {pathname: `/${name}`}).toString()
function createDb(name) {
  execFileSync(
    'psql',
    [pgAdmin, '-q', '-c', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`, '-c', `CREATE DATABASE "${name}"`],
    {stdio: 'pipe'},
  )
  return pgUrl(name)
}

const generate = (dir, metricRows, artifactBytes) =>
  generateAppData(dir, {python: venv.python, metricRows, artifactBytes})

const results = {scale, sizes: []}
const mlflowctl = (args) => `node ${cli} ${args} --json`
const backupId = (stdout) => JSON.parse(stdout).result.id
try {
  let full
  for (const fraction of [0.5, 1]) {
    const metricRows = Math.round(10_000_000 * scale * fraction)
    const artifactBytes = Math.round(1024 ** 3 * scale * fraction)
    const dir = join(work, `app-data-${fraction}`)
    process.stderr.write(
      `Generating ${metricRows} metric rows and ${(artifactBytes / 1024 ** 2).toFixed(0)} MiB of artifacts...\n`,
    )
    const data = generate(dir, metricRows, artifactBytes)
    const repo = join(work, `repo-${fraction}`)
    const ours = measure('backup create', mlflowctl(`backup create --source ${dir} --repo ${repo}`))
    const baseline = measure(
      'sqlite3 .backup + tar czf',
      `sqlite3 ${dir}/mlflow.db ".backup ${work}/snap.db" && tar czf ${work}/baseline.tgz -C ${work} snap.db -C ${dir} artifacts && rm ${work}/snap.db`,
    )
    const size = {
      fraction,
      ...data,
      backup: {
        mlflowctl: ours,
        baseline,
        archiveBytes: sizeOf(repo),
        baselineBytes: statSync(join(work, 'baseline.tgz')).size,
      },
    }
    results.sizes.push(size)
    full = {dir, repo, id: backupId(ours.stdout), size}
    if (fraction < 1) {
      rmSync(join(work, 'baseline.tgz'))
      rmSync(dir, {recursive: true, force: true})
    }
  }

  process.stderr.write('Restore into a new app-data directory...\n')
  const appRestore = measure(
    'restore → app-data',
    mlflowctl(`backup restore ${full.id} --repo ${full.repo} --to ${work}/restored-app-data`),
  )
  const untar = measure(
    'tar xzf + copy of the database',
    `mkdir -p ${work}/untar && tar xzf ${work}/baseline.tgz -C ${work}/untar && cp ${work}/untar/snap.db ${work}/untar/mlflow.db`,
  )
  results.appData = {restore: {mlflowctl: appRestore, baseline: untar}}
  rmSync(join(work, 'untar'), {recursive: true, force: true})
  rmSync(join(work, 'restored-app-data'), {recursive: true, force: true})
  rmSync(join(work, 'baseline.tgz'))
  if (skipPostgres) throw new SkipRest()

  process.stderr.write('SQLite → PostgreSQL...\n')
  const source = createDb('bench_source')
  const restoreToPg = measure(
    'restore SQLite backup → PostgreSQL',
    mlflowctl(`backup restore ${full.id} --repo ${full.repo} --to ${source} --artifacts-to ${work}/pg-artifacts`),
  )
  createDb('bench_pgloader')
  const pgloader = measure(
    'pgloader SQLite → PostgreSQL',
    `pgloader --quiet sqlite://${full.dir}/mlflow.db ${pgUrl('bench_pgloader')}`,
  )

  process.stderr.write('PostgreSQL backup and restore (database only)...\n')
  const pgRepo = join(work, 'pg-repo')
  const pgBackup = measure(
    'backup create --source postgresql',
    mlflowctl(`backup create --source ${source} --artifacts none --repo ${pgRepo}`),
  )
  const pgDump = measure('pg_dump -Fc', `pg_dump -Fc -f ${work}/dump.fc ${source}`)
  const target = createDb('bench_target')
  const pgRestore = measure(
    'restore PostgreSQL backup → empty PostgreSQL',
    mlflowctl(`backup restore ${backupId(pgBackup.stdout)} --repo ${pgRepo} --to ${target}`),
  )
  const pgRestoreTarget = createDb('bench_pg_restore')
  const pgRestoreBaseline = measure('pg_restore', `pg_restore -d ${pgRestoreTarget} ${work}/dump.fc`)
  results.postgres = {
    sqliteToPg: {mlflowctl: restoreToPg, baseline: pgloader},
    backup: {
      mlflowctl: pgBackup,
      baseline: pgDump,
      archiveBytes: sizeOf(pgRepo),
      baselineBytes: statSync(join(work, 'dump.fc')).size,
    },
    restore: {mlflowctl: pgRestore, baseline: pgRestoreBaseline},
  }
} catch (error) {
  if (!(error instanceof SkipRest)) throw error
} finally {
  // BENCH_KEEP=1 keeps the databases too (bench_source holds the PostgreSQL source), for profiling afterwards.
  for (const name of process.env.BENCH_KEEP
    ? []
    : ['bench_source', 'bench_pgloader', 'bench_target', 'bench_pg_restore'])
    spawnSync('psql', [pgAdmin, '-q', '-c', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`])
  if (!process.env.BENCH_KEEP) rmSync(work, {recursive: true, force: true})
}

const row = (name, pair, goal) =>
  `| ${name} | ${pair.mlflowctl.seconds.toFixed(1)} s | ${pair.baseline.seconds.toFixed(1)} s | ${(pair.mlflowctl.seconds / pair.baseline.seconds).toFixed(2)}× (goal ${goal}) | ${pair.mlflowctl.peakMiB.toFixed(0)} MiB | ${pair.baseline.peakMiB.toFixed(0)} MiB |`
const lines = [
  '| Measurement | mlflowctl | baseline | ratio | mlflowctl peak RSS | baseline peak RSS |',
  '| --- | --- | --- | --- | --- | --- |',
]
for (const size of results.sizes)
  lines.push(
    row(
      `backup create, ${(size.metricRows / 1e6).toFixed(0)}M metrics + ${(size.artifactBytes / 1024 ** 3).toFixed(2)} GiB artifacts vs sqlite3 .backup + tar czf`,
      size.backup,
      '≤ 0.8×',
    ),
  )
lines.push(
  row('restore into a new app-data directory vs tar xzf + copy of the database', results.appData.restore, '≤ 1.2×'),
)
if (results.postgres) {
  lines.push(row('restore SQLite backup → PostgreSQL vs pgloader', results.postgres.sqliteToPg, '≤ 1.0×'))
  lines.push(row('backup create --source postgresql (DB only) vs pg_dump -Fc', results.postgres.backup, '≤ 1.2×'))
  lines.push(row('restore → empty PostgreSQL vs pg_restore', results.postgres.restore, '≤ 1.2×'))
}
console.log(lines.join('\n'))
mkdirSync(join(root, 'bench', 'results'), {recursive: true})
writeFileSync(
  join(root, 'bench', 'results', `backup-${Date.now()}.json`),
  `${JSON.stringify(results, (key, value) => (key === 'stdout' ? undefined : value), 2)}\n`,
)
