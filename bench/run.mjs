#!/usr/bin/env node
// Runs every benchmark in bench/ in turn.
import {spawnSync} from 'node:child_process'
import {fileURLToPath} from 'node:url'

for (const name of ['dev-server.mjs', 'backup.mjs', 'replica.mjs', 'replica-restore.mjs']) {
  const result = spawnSync(
    process.execPath,
    [fileURLToPath(new URL(name, import.meta.url)), ...process.argv.slice(2)],
    {stdio: 'inherit'},
  )
  if (result.status !== 0) process.exit(result.status ?? 1)
}
