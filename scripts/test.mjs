#!/usr/bin/env node
// Runs every test tier and ends with one line: "N passed, N failed, N skipped".
// Usage: node scripts/test.mjs [unit|commands|integration|extension ...]   (default: all tiers)
import {spawn} from 'node:child_process'
import {createConnection, createServer} from 'node:net'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {availableParallelism, tmpdir} from 'node:os'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

import semver from 'semver'

const root = fileURLToPath(new URL('..', import.meta.url))
const ALL = ['unit', 'commands', 'integration', 'extension']
const tiers = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL
const inCI = Boolean(process.env.CI)
const totals = {passed: 0, failed: 0, skipped: 0}
const scratch = mkdtempSync(join(tmpdir(), 'mlflowctl-test-'))

function listTests(dir, suffix = '.test.ts') {
  if (!existsSync(dir)) return []
  return readdirSync(dir, {withFileTypes: true})
    .flatMap((entry) => {
      const full = join(dir, entry.name)
      if (entry.isDirectory()) return listTests(full, suffix)
      return entry.name.endsWith(suffix) ? [full] : []
    })
    .sort()
}

/** Wall seconds of each test file (integration: each its own run) and each pytest run, for the slowest list. */
const durations = []

function countTap(text) {
  const count = (name) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
  return {passed: count('pass'), failed: count('fail') + count('cancelled'), skipped: count('skipped') + count('todo')}
}

/** One `node --test` run over `files`; its output is streamed, or held and printed whole when runs overlap. */
function runNode(files, tap, {concurrency = [], hold = false, nice = false} = {}) {
  return new Promise((resolveRun) => {
    const started = Date.now()
    const command = [
      process.execPath,
      '--import',
      'tsx',
      '--import',
      './test/support/setup.ts',
      '--test',
      ...concurrency,
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      '--test-reporter=tap',
      `--test-reporter-destination=${tap}`,
      ...files,
    ]
    // A background job runs at the lowest priority (nice 19): it takes only the CPU the two main jobs leave idle.
    const [program, ...args] = nice ? ['nice', '-n', '19', ...command] : command
    const child = spawn(program, args, {
      cwd: root,
      stdio: ['ignore', hold ? 'pipe' : 'inherit', hold ? 'pipe' : 'inherit'],
      env: process.env,
    })
    let held = ''
    child.stdout?.on('data', (chunk) => (held += chunk))
    child.stderr?.on('data', (chunk) => (held += chunk))
    child.on('close', (status) => {
      if (hold) process.stdout.write(held)
      const counts = countTap(existsSync(tap) ? readFileSync(tap, 'utf8') : '')
      // A crash before the reporter ran still counts as a failure.
      if (status !== 0 && counts.failed === 0) counts.failed += 1
      resolveRun({...counts, seconds: (Date.now() - started) / 1000})
    })
  })
}

const addCounts = (counts) => {
  totals.passed += counts.passed
  totals.failed += counts.failed
  totals.skipped += counts.skipped
}

/**
 * Unit and command tests: one `node --test` run per tier, streamed, a file per core at a time (node's own default
 * leaves one core idle: on two cores it runs the files one by one, which took twice as long, measured).
 */
async function runQuickTier(tier) {
  // Node's --test does not look for .ts files by itself, so the files are listed here.
  const files = listTests(join(root, 'test', tier)).map((file) => relative(root, file))
  if (files.length === 0) return
  process.stdout.write(`\n== ${tier} (${files.length} files) ==\n`)
  const concurrency = [`--test-concurrency=${availableParallelism()}`]
  addCounts(await runNode(files, join(scratch, `${tier}.tap`), {concurrency}))
}

/** Integration tests start real MLflow servers: each file is one job of the slow pool, so its wall time is known. */
function integrationJobs() {
  return listTests(join(root, 'test', 'integration')).map((file, index) => {
    const name = relative(root, file)
    const text = readFileSync(file, 'utf8')
    const resources = FIXED_RESOURCES.filter((resource) => text.includes(resource.marker)).map(
      (resource) => resource.name,
    )
    return {
      name,
      sizeHint: statSync(file).size,
      resources,
      background: text.includes(BACKGROUND_MARKER),
      run: (hold, nice = false) => runNode([name], join(scratch, `integration-${index}.tap`), {hold, nice}),
    }
  })
}

/**
 * What some files need for themselves, so the pool never runs two of them at once: PostgreSQL checks cloud tokens
 * through an LDAP bind to a verifier on one fixed address (scripts/setup-pg-token-auth.sh), which each of those
 * files starts.
 */
const FIXED_RESOURCES = [{name: 'the token verifier on 127.0.0.1:3899', marker: 'startTokenVerifier('}]

/**
 * A file that says this of itself has no deadline that a slow machine could miss, so it may run as the pool's
 * background job, on the CPU the main jobs leave idle (they keep about 0.85 of the two cores busy, measured).
 */
const BACKGROUND_MARKER = 'test-pool: background'

function testVenvs() {
  const file = join(process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl'), 'test-venvs.json')
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : []
}

/** The extension's pytest suites: one job per MLflow venv, and each cloud mode's tests in that mode's bundle venv. */
function extensionJobs() {
  const venvs = testVenvs()
  if (venvs.length === 0) {
    const reason = 'no MLflow test venvs: run `bash .ci/run` or `node scripts/provision.mjs` first'
    process.stdout.write(`SKIP extension tier: ${reason}\n`)
    if (inCI) totals.failed += 1
    else totals.skipped += 1
    return []
  }
  const cacheDir = process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
  const readCache = (name) =>
    existsSync(join(cacheDir, name)) ? JSON.parse(readFileSync(join(cacheDir, name), 'utf8')) : undefined
  const env = {...process.env, MLFLOWCTL_TEST_EMULATORS_PYTHON: readCache('emulators.json')?.python ?? ''}
  // The long tests marked newest_mlflow_only (their behaviour does not change with MLflow's version) run in the
  // newest venv only.
  const newest = venvs
    .map((venv) => venv.mlflowVersion)
    .sort(semver.compare)
    .at(-1)
  const runs = venvs.map((venv) => ({
    label: `MLflow ${venv.mlflowVersion}`,
    python: venv.python,
    // The monitor report's checks (standard library only) run once, beside the newest venv's suite.
    paths: [
      'templates/extension/tests',
      '--ignore=templates/extension/tests/cloud',
      ...(venv.mlflowVersion === newest ? ['templates/monitor/tests'] : []),
    ],
    env: venv.mlflowVersion === newest ? {} : {MLFLOWCTL_TEST_OLDER_VENV: '1'},
  }))
  // Each cloud mode's tests run in that mode's bundle venv (its SDKs are not in the others).
  const cloudTests = listTests(join(root, 'templates/extension/tests/cloud'), '.py').filter((file) =>
    /\/test_[a-z]+.*\.py$/.test(file),
  )
  for (const [storage, venv] of Object.entries(readCache('cloud-venvs.json') ?? {})) {
    const files = cloudTests.filter((file) => file.includes(`/test_${storage}`)).map((file) => relative(root, file))
    if (files.length > 0)
      runs.push({label: `MLflow ${venv.mlflowVersion} ${storage}`, python: venv.python, paths: files})
  }
  if (inCI && !runs.some((run) => run.label.endsWith('gcp'))) {
    process.stdout.write('cloud venvs missing under CI: run `node scripts/provision.mjs`\n')
    totals.failed += 1
  }
  return runs.map((run) => ({
    name: `pytest (${run.label})`,
    sizeHint: run.paths.length > 1 ? 12_000 : 2_000,
    run: (hold) => runPytest(run, {...env, ...run.env}, hold),
  }))
}

function runPytest(run, env, hold) {
  return new Promise((resolveRun) => {
    const junit = join(scratch, `pytest-${run.label.replaceAll(' ', '-')}.xml`)
    const started = Date.now()
    const child = spawn(
      run.python,
      ['-m', 'pytest', ...run.paths, '-q', '-rs', '-p', 'no:cacheprovider', `--junitxml=${junit}`],
      {cwd: root, stdio: ['ignore', hold ? 'pipe' : 'inherit', hold ? 'pipe' : 'inherit'], env},
    )
    let held = ''
    child.stdout?.on('data', (chunk) => (held += chunk))
    child.stderr?.on('data', (chunk) => (held += chunk))
    child.on('close', (status) => {
      if (hold) process.stdout.write(held)
      const xml = existsSync(junit) ? readFileSync(junit, 'utf8') : ''
      const attr = (name) => Number(new RegExp(`<testsuite[^>]*\\s${name}="(\\d+)"`).exec(xml)?.[1] ?? 0)
      const failed = attr('failures') + attr('errors')
      const skipped = attr('skipped')
      const counts = {passed: attr('tests') - failed - skipped, failed, skipped, seconds: (Date.now() - started) / 1000}
      if (status !== 0 && failed === 0) counts.failed += 1
      resolveRun(counts)
    })
  })
}

/**
 * The slow pool: integration files and pytest suites, `jobs` at a time (MLFLOWCTL_TEST_JOBS; default two on a
 * machine with two or more cores: one job keeps about 0.8 of a core busy, measured; a third job on two cores
 * stretched every job by half, and a token-expiry test under load failed). Longest first, from the
 * durations of the previous run here (in the cache), else test/durations.json (measured on the CI machine;
 * refresh it with MLFLOWCTL_TEST_DURATIONS_UPDATE=1), else a file's size, so that no long job starts last.
 * Jobs that run at the same time share nothing but the emulators and PostgreSQL: each makes its own ports,
 * directories and databases. Beside them, one background job at a time runs at nice 19 from the files marked for it
 * (BACKGROUND_MARKER): the CPU the two leave idle, without stretching them. It starts at once; the main jobs start
 * when `mainStart` resolves (after the quick tiers, which leave about a quarter of the CPU idle).
 */
async function runSlowPool(jobs, mainStart) {
  if (jobs.length === 0) return
  const known = readDurations()
  const expected = (job) => known[job.name] ?? job.sizeHint / 100
  const queue = [...jobs].sort((a, b) => expected(b) - expected(a))
  const width = Math.max(1, Number(process.env.MLFLOWCTL_TEST_JOBS ?? Math.min(2, availableParallelism())))
  const busy = new Set()
  // The longest job whose fixed resources are free and that `accept`s; undefined when none is.
  const take = (accept) => {
    const index = queue.findIndex((job) => accept(job) && !(job.resources ?? []).some((resource) => busy.has(resource)))
    return index < 0 ? undefined : queue.splice(index, 1)[0]
  }
  const waiting = []
  const runJob = async (job, nice) => {
    for (const resource of job.resources ?? []) busy.add(resource)
    if (width > 1) process.stdout.write(`-- started: ${job.name}${nice ? ' (background, nice 19)' : ''}\n`)
    const counts = await job.run(width > 1, nice)
    process.stdout.write(
      `-- finished: ${job.name} (${counts.seconds.toFixed(1)} s: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped)\n`,
    )
    durations.push({name: job.name, seconds: counts.seconds, passed: counts.failed === 0})
    addCounts(counts)
    for (const resource of job.resources ?? []) busy.delete(resource)
    for (const resolve of waiting.splice(0)) resolve()
  }
  // The main workers take the other jobs first, and background ones only when nothing else is left.
  const worker = async () => {
    while (queue.length > 0) {
      const job = take((candidate) => !candidate.background) ?? take(() => true)
      if (job) await runJob(job, false)
      else await new Promise((resolve) => waiting.push(resolve))
    }
  }
  const backgroundWorker = async () => {
    while (queue.some((job) => job.background)) {
      const job = take((candidate) => candidate.background)
      if (job) await runJob(job, true)
      else await new Promise((resolve) => waiting.push(resolve))
    }
  }
  const header = mainStart.then(() =>
    process.stdout.write(
      `\n== integration and extension (${jobs.length} jobs, ${width} at a time, longest first) ==\n`,
    ),
  )
  await Promise.all([
    ...Array.from({length: width}, () => header.then(worker)),
    ...(width > 1 ? [backgroundWorker()] : []),
  ])
  writeDurations()
}

const durationsFile = join(
  process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl'),
  'test-durations.json',
)
const baselineFile = join(root, 'test', 'durations.json')
function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch {
    return {}
  }
}
const readDurations = () => ({...readJson(baselineFile), ...readJson(durationsFile)})
/** Only a job that passed says how long it takes: a failure can end a file early. */
function writeDurations() {
  const measured = Object.fromEntries(durations.filter((d) => d.passed).map((d) => [d.name, Math.round(d.seconds)]))
  const targets = process.env.MLFLOWCTL_TEST_DURATIONS_UPDATE ? [durationsFile, baselineFile] : [durationsFile]
  for (const file of targets) {
    try {
      mkdirSync(dirname(file), {recursive: true})
      const merged = {...readJson(file), ...measured}
      const sorted = Object.fromEntries(Object.entries(merged).sort(([a], [b]) => a.localeCompare(b)))
      writeFileSync(file, `${JSON.stringify(sorted, null, 2)}\n`)
    } catch {
      // Only a scheduling hint: a read-only cache costs the order, not the run.
    }
  }
}

// Emulators are started once per run here and found by the tests through env vars (test/support/services.ts).
async function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function waitForPort(port, child, seconds = 30) {
  for (let i = 0; i < seconds * 10; i++) {
    if (child.exitCode !== null) return false
    const open = await new Promise((resolve) => {
      const socket = createConnection({host: '127.0.0.1', port}, () => (socket.end(), resolve(true)))
      socket.on('error', () => resolve(false))
    })
    if (open) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

async function startAzurite() {
  const bin = join(root, 'node_modules', '.bin', 'azurite-blob')
  if (!existsSync(bin)) return undefined
  const port = await freePort()
  // --skipApiVersionCheck: @azure/storage-blob 12.32 sends an API version Azurite 3.35 does not know.
  const child = spawn(
    bin,
    [
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(port),
      '--inMemoryPersistence',
      '--skipApiVersionCheck',
      '--silent',
      '--disableTelemetry',
    ],
    {stdio: 'ignore'},
  )
  if (!(await waitForPort(port, child))) {
    child.kill()
    return undefined
  }
  process.env.MLFLOWCTL_TEST_AZURITE_BLOB = `http://127.0.0.1:${port}/devstoreaccount1`
  return child
}

const needsEmulators = tiers.includes('integration')
const azurite = needsEmulators ? await startAzurite() : undefined
for (const tier of tiers) {
  if (!ALL.includes(tier)) {
    process.stderr.write(`unknown tier "${tier}"; use ${ALL.join(', ')}\n`)
    process.exit(2)
  }
}
const quickTiers = (async () => {
  for (const tier of tiers.filter((name) => name === 'unit' || name === 'commands')) await runQuickTier(tier)
})()
// The pool's background job starts at once, on what the quick tiers leave idle; its main jobs start after them.
await Promise.all([
  quickTiers,
  runSlowPool(
    [
      ...(tiers.includes('integration') ? integrationJobs() : []),
      ...(tiers.includes('extension') ? extensionJobs() : []),
    ],
    quickTiers,
  ),
])
if (durations.length > 0) {
  process.stdout.write('\nSlowest test files:\n')
  for (const {name, seconds} of [...durations].sort((a, b) => b.seconds - a.seconds).slice(0, 10))
    process.stdout.write(`  ${seconds.toFixed(1).padStart(7)} s  ${name}\n`)
}
azurite?.kill()
if (inCI && totals.skipped > 0) {
  process.stdout.write(`\nCI=true: ${totals.skipped} skipped test(s) count as failures.\n`)
  totals.failed += totals.skipped
}
process.stdout.write(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`)
process.exit(totals.failed > 0 ? 1 : 0)
