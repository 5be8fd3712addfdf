#!/usr/bin/env node
// Builds the MLflow venvs the tests use (the newest 3.x and the last 2.x), from the very requirements.txt
// that `mlflowctl init` renders, so `dev up` in the tests reuses them. Needs `npm run build` first.
// Writes <cache>/test-venvs.json. Usage: node scripts/provision.mjs [VERSION ...]
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {renderBundle} from '../dist/core/bundle.js'
import {LAST_MLFLOW_2, NEWEST_KNOWN_MLFLOW} from '../dist/core/versions.js'
import {EXTENSION_TEMPLATES, readTree} from '../dist/adapters/fs/bundle-dir.js'
import {detectPythonVersion, pythonCommand} from '../dist/adapters/python/python.js'
import {ensureVenv} from '../dist/adapters/python/venv.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const cacheDir = process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
const versions = process.argv.slice(2).length > 0 ? process.argv.slice(2) : [NEWEST_KNOWN_MLFLOW, LAST_MLFLOW_2]
const python = pythonCommand(process.env)
const pythonVersion = await detectPythonVersion(python)
const templates = await readTree(EXTENSION_TEMPLATES)
const out = []
for (const mlflowVersion of versions) {
  const started = Date.now()
  const bundle = renderBundle(templates, {storage: 'local', mlflowVersion, pythonVersion, toolVersion: 'provision'})
  const requirements = bundle.files.find((file) => file.path === 'requirements.txt').content.toString('utf8')
  const venv = await ensureVenv({cacheDir, python, pythonVersion, requirements, extraPackages: ['pytest'], onProgress: (line) => process.stderr.write(`  [${mlflowVersion}] ${line}\n`)})
  process.stdout.write(`MLflow ${mlflowVersion}: venv ${venv.key} ${venv.reused ? 'reused' : 'built'} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  out.push({mlflowVersion, python: venv.python, key: venv.key})
}
mkdirSync(cacheDir, {recursive: true})
writeFileSync(join(cacheDir, 'test-venvs.json'), `${JSON.stringify(out, null, 2)}\n`)
