#!/usr/bin/env node
// Lints and checks the layout of the Python under templates/ (the extension, its tests, the CLI's tools) with the
// ruff that scripts/provision.mjs pins (ruff.toml has the rules). `--fix` applies the formatter and safe fixes.
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const cacheDir = process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
const recorded = join(cacheDir, 'python-lint.json')
if (!existsSync(recorded)) {
  process.stderr.write('No Python linter yet: run `node scripts/provision.mjs` (or `bash .ci/run`) first.\n')
  process.exit(1)
}
const ruff = join(JSON.parse(readFileSync(recorded, 'utf8')).bin, 'ruff')
const fix = process.argv.includes('--fix')
const runs = fix
  ? [
      ['format', 'templates'],
      ['check', '--fix', 'templates'],
    ]
  : [
      ['check', 'templates'],
      ['format', '--check', 'templates'],
    ]
let failed = false
for (const args of runs) {
  const result = spawnSync(ruff, args, {cwd: root, stdio: 'inherit'})
  if (result.status !== 0) failed = true
}
process.exit(failed ? 1 : 0)
