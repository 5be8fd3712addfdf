// oclif discovers commands with tinyglobby, which returns directory entries in the
// filesystem's order, so the manifest's command order differs between machines and CI
// flags a fresh manifest as stale. Sorting the ids makes the generated file deterministic.
import {readFileSync, writeFileSync} from 'node:fs'

const path = new URL('../oclif.manifest.json', import.meta.url)
const manifest = JSON.parse(readFileSync(path, 'utf8'))
manifest.commands = Object.fromEntries(
  Object.keys(manifest.commands)
    .sort()
    .map((id) => [id, manifest.commands[id]]),
)
writeFileSync(path, JSON.stringify(manifest, null, 2) + '\n')
