#!/usr/bin/env node
// Builds the MLflow venvs the tests use (the newest 3.x and the last 2.x), from the very requirements.txt
// that `mlflowctl init` renders, so `dev up` in the tests reuses them. Needs `npm run build` first.
// Also builds the venvs of the cloud-mode bundles (newest 3.x) and one for the emulators (moto, GCS).
// And one for the Python linter (ruff). Writes <cache>/test-venvs.json, cloud-venvs.json, emulators.json and
// python-lint.json. Usage: node scripts/provision.mjs [VERSION ...]
import {mkdirSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {renderBundle} from '../dist/core/bundle.js'
import {A2WSGI_REQUIREMENT, LAST_MLFLOW_2, NEWEST_KNOWN_MLFLOW, appModeFor} from '../dist/core/versions.js'
import {EXTENSION_TEMPLATES, readTree} from '../dist/adapters/fs/bundle-dir.js'
import {detectPythonVersion, pythonCommand} from '../dist/adapters/python/python.js'
import {ensureVenv} from '../dist/adapters/python/venv.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const cacheDir = process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
const versions = process.argv.slice(2).length > 0 ? process.argv.slice(2) : [NEWEST_KNOWN_MLFLOW, LAST_MLFLOW_2]
const python = pythonCommand(process.env)
const pythonVersion = await detectPythonVersion(python)
const templates = await readTree(EXTENSION_TEMPLATES)
const UPGRADE_MATRIX_EXTRA = ['3.0.1', '3.1.0', '2.16.2', '2.9.2']
const EMULATORS = 'moto[server]==5.2.5\ngcp-storage-emulator==2026.7.19\n'
const PYTHON_LINT = 'ruff==0.14.10\n'

async function build(label, requirements, extraPackages = []) {
  const started = Date.now()
  const venv = await ensureVenv({
    cacheDir,
    python,
    pythonVersion,
    requirements,
    extraPackages,
    onProgress: (line) => process.stderr.write(`  [${label}] ${line}\n`),
  })
  process.stdout.write(
    `${label}: venv ${venv.key} ${venv.reused ? 'reused' : 'built'} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  )
  return venv
}

function bundleRequirements(storage, mlflowVersion, appMode, replicaStore) {
  const bundle = renderBundle(templates, {
    storage,
    mlflowVersion,
    pythonVersion,
    toolVersion: 'provision',
    appMode,
    replicaStore,
  })
  return bundle.files.find((file) => file.path === 'requirements.txt').content.toString('utf8')
}

// The venvs build three at a time: a cold run spends most of its time downloading, and a warm one linking files.
const PARALLEL_BUILDS = 3
const builds = []
/** Queues a build; the promise is its venv. A failed build fails the run (the workers below reject). */
const schedule = (label, requirements, extraPackages) =>
  new Promise((resolveBuild) => builds.push(() => build(label, requirements, extraPackages).then(resolveBuild)))
const tests = versions.map((mlflowVersion) => ({
  mlflowVersion,
  // pytest too: the extension's own tests run in these venvs; a2wsgi on 3.3+, for its python-api tests.
  venv: schedule(`MLflow ${mlflowVersion}`, bundleRequirements('local', mlflowVersion), [
    'pytest',
    ...(appModeFor(mlflowVersion) === 'python-fastapi' ? [A2WSGI_REQUIREMENT] : []),
  ]),
}))
// The upgrade matrix (test/integration/upgrade-matrix*.test.ts) also starts from 3.0.1, 2.16.2 and 2.9.2 (releases
// users still run) and rolls back instantly from 3.1.0; the fake Connect would build their venvs on first deploy,
// this builds them ahead (same requirements, same cache key).
for (const mlflowVersion of UPGRADE_MATRIX_EXTRA)
  schedule(`MLflow ${mlflowVersion} (upgrade matrix)`, bundleRequirements('local', mlflowVersion))
// Content first deployed on MLflow < 3.3 stays python-api when upgraded in place: its 3.x bundle adds a2wsgi.
schedule(
  `MLflow ${NEWEST_KNOWN_MLFLOW} python-api (in-place upgrades)`,
  bundleRequirements('local', NEWEST_KNOWN_MLFLOW, 'python-api'),
)
// Local storage replicated to S3 (init --replica-store s3; test/integration/replica-connect.test.ts).
schedule(
  `MLflow ${NEWEST_KNOWN_MLFLOW} local, S3 replica`,
  bundleRequirements('local', NEWEST_KNOWN_MLFLOW, undefined, 's3'),
)
// The fake Connect builds the same venvs from the deployed bundles' requirements.txt and finds these.
// pytest: the extension's cloud tests (templates/extension/tests/cloud) run in these.
const clouds = ['aws', 'azure', 'gcp'].map((storage) => ({
  storage,
  venv: schedule(`MLflow ${NEWEST_KNOWN_MLFLOW} ${storage}`, bundleRequirements(storage, NEWEST_KNOWN_MLFLOW), [
    'pytest',
  ]),
}))
const emulatorsVenv = schedule('emulators', EMULATORS)
// The Python linter and formatter (scripts/lint-python.mjs), pinned like the tests' packages.
const pythonLintVenv = schedule('python lint', PYTHON_LINT)
const workers = Array.from({length: PARALLEL_BUILDS}, async () => {
  while (builds.length > 0) await builds.shift()()
})
await Promise.all(workers)
const out = []
for (const {mlflowVersion, venv} of tests) {
  const {python: venvPython, key} = await venv
  out.push({mlflowVersion, python: venvPython, key})
}
const cloud = {}
for (const {storage, venv} of clouds) {
  const {python: venvPython, key} = await venv
  cloud[storage] = {mlflowVersion: NEWEST_KNOWN_MLFLOW, python: venvPython, key}
}
const emulators = await emulatorsVenv
const pythonLint = await pythonLintVenv
mkdirSync(cacheDir, {recursive: true})
writeFileSync(
  join(cacheDir, 'python-lint.json'),
  `${JSON.stringify({bin: dirname(pythonLint.python), key: pythonLint.key}, null, 2)}\n`,
)
writeFileSync(join(cacheDir, 'test-venvs.json'), `${JSON.stringify(out, null, 2)}\n`)
writeFileSync(join(cacheDir, 'cloud-venvs.json'), `${JSON.stringify(cloud, null, 2)}\n`)
writeFileSync(
  join(cacheDir, 'emulators.json'),
  `${JSON.stringify({python: emulators.python, key: emulators.key}, null, 2)}\n`,
)
