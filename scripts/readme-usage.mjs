// oclif readme writes "npm install -g mlflowctl" into the Usage section, but mlflowctl is not on the npm registry:
// this replaces that line with the commands that work from a clone (README "Usage"), so the generated README stays true,
// and keeps the example `--version` output free of the generating machine's platform and Node version.
import {readFileSync, writeFileSync} from 'node:fs'

const path = new URL('../README.md', import.meta.url)
const text = readFileSync(path, 'utf8')
const fixed = text
  .replace(
    '$ npm install -g mlflowctl\n',
    '$ npm ci && npm link      # in a clone: puts mlflowctl on PATH (or run it as npx mlflowctl inside the clone)\n',
  )
  // oclif prints the platform and Node version of the machine that generated the README: kept generic, so that the
  // README is the same whichever machine and Node release generate it.
  .replace(/^(mlflowctl\/\S+) \S+ node-v\S+$/m, '$1 <platform>-<arch> node-v<version>')
if (fixed !== text) writeFileSync(path, fixed)
