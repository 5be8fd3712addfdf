#!/usr/bin/env node
// Lints and checks the layout of the Python under templates/ (the extension, its tests, the CLI's tools) with the
// ruff that scripts/provision.mjs pins (ruff.toml has the rules), then type-checks the extension and the tools
// with pyright (an npm dev dependency) against the newest MLflow venv, the cloud bundles' SDKs on its path.
// `--fix` applies the formatter and ruff's safe fixes.
import {spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const cacheDir = process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
const readCache = (name, fallback) =>
  existsSync(join(cacheDir, name)) ? JSON.parse(readFileSync(join(cacheDir, name), 'utf8')) : fallback
const lintVenv = readCache('python-lint.json', undefined)
if (!lintVenv) {
  process.stderr.write('No Python linter yet: run `node scripts/provision.mjs` (or `bash .ci/run`) first.\n')
  process.exit(1)
}
const ruff = join(lintVenv.bin, 'ruff')
const fix = process.argv.includes('--fix')
const runs = fix
  ? [
      ['format', 'templates', 'test/fake-connect'],
      ['check', '--fix', 'templates', 'test/fake-connect'],
    ]
  : [
      ['check', 'templates', 'test/fake-connect'],
      ['format', '--check', 'templates', 'test/fake-connect'],
    ]
let failed = false
for (const args of runs) {
  const result = spawnSync(ruff, args, {cwd: root, stdio: 'inherit'})
  if (result.status !== 0) failed = true
}

const newest = readCache('test-venvs.json', []).find((venv) => venv.mlflowVersion.startsWith('3.'))
if (!newest) {
  process.stderr.write('No MLflow 3 venv to type-check against: run `node scripts/provision.mjs` first.\n')
  process.exit(1)
}
// The cloud modules import SDKs that only the cloud bundles install (boto3, azure-*, the Cloud SQL connector).
const sitePackages = (python) => {
  const lib = join(dirname(dirname(python)), 'lib')
  return readdirSync(lib).map((version) => join(lib, version, 'site-packages'))
}
const cloudPaths = Object.values(readCache('cloud-venvs.json', {})).flatMap((venv) => sitePackages(venv.python))
const scratch = mkdtempSync(join(tmpdir(), 'mlflowctl-pyright-'))
try {
  const config = join(scratch, 'pyrightconfig.json')
  writeFileSync(
    config,
    JSON.stringify({
      extraPaths: [
        join(root, 'templates', 'extension'),
        join(root, 'templates', 'monitor'),
        join(root, 'templates', 'tools'),
        ...cloudPaths,
      ],
      typeCheckingMode: 'standard',
    }),
  )
  const pyright = join(root, 'node_modules', '.bin', 'pyright')
  const files = ['extension/mlflowctl_extension', 'extension/app.py', 'monitor/mlflowctl_monitor.py', 'tools'].map(
    (path) => join('templates', path),
  )
  const result = spawnSync(pyright, ['-p', config, '--pythonpath', newest.python, ...files], {
    cwd: root,
    stdio: 'inherit',
  })
  if (result.status !== 0) failed = true
} finally {
  rmSync(scratch, {recursive: true, force: true})
}
process.exit(failed ? 1 : 0)
