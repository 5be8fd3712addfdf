/**
 * How the user can run mlflowctl from where they are, so that every hint the tool prints is a command that works:
 * `mlflowctl` when this copy is on PATH (npm link, npm install -g), `npx mlflowctl` inside the project (npm runs a
 * package's own bin there), else `node /path/to/bin/run.js`. MLFLOWCTL_INVOCATION overrides it (a wrapper script or
 * an alias with another name).
 */
import {accessSync, constants, realpathSync} from 'node:fs'
import {join} from 'node:path'

export interface InvocationProbe {
  env: Record<string, string | undefined>
  /** The real path of this copy's bin/run.js. */
  self: string
  /** The directory of this copy's package.json. */
  packageRoot: string
  cwd: string
  /** The real path of an executable file, or undefined when there is none. */
  realExecutable(path: string): string | undefined
}

export const CLI_NAME = 'mlflowctl'

export function invocationPrefix(probe: InvocationProbe): string {
  const override = probe.env.MLFLOWCTL_INVOCATION?.trim()
  if (override) return override
  const pathDirs = (probe.env.PATH ?? '').split(':').filter(Boolean)
  // The first mlflowctl on PATH is the one a shell runs: it must be this copy, not another install.
  for (const dir of pathDirs) {
    const found = probe.realExecutable(`${dir}/${CLI_NAME}`)
    if (found === undefined) continue
    if (found === probe.self) return CLI_NAME
    break
  }
  const root = probe.packageRoot.replace(/\/$/, '')
  if (probe.cwd === root || probe.cwd.startsWith(`${root}/`)) return `npx ${CLI_NAME}`
  return `node ${probe.self}`
}

/**
 * Rewrites "mlflowctl <command>" in a hint to the prefix that works here. `commandIds` are whole commands as typed
 * ("backup create", "init"); only a name followed by one of them, by "<topic> --help" or by --help is rewritten, so
 * that prose such as "not a mlflowctl command" or "not an mlflowctl replica" stays as it is.
 */
export function withInvocation(text: string, prefix: string, commandIds: readonly string[]): string {
  if (prefix === CLI_NAME || commandIds.length === 0) return text
  const topics = [...new Set(commandIds.filter((id) => id.includes(' ')).map((id) => id.split(' ')[0]))]
  const escape = (name: string) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const names = [...commandIds, ...topics.map((topic) => `${topic} --help`), '--help']
    .sort((a, b) => b.length - a.length)
    .map(escape)
    .join('|')
  const pattern = new RegExp(`(^|[\\s\`'"(])${CLI_NAME} (?=(?:${names})(?![\\w-]))`, 'g')
  return text.replace(pattern, `$1${prefix} `)
}

/** withInvocation for oclif's command IDs ("backup:create"). Pure. */
export function hintRewriter(prefix: string, commandIDs: readonly string[]): (text: string) => string {
  const ids = commandIDs.map((id) => id.replaceAll(':', ' '))
  return (text) => withInvocation(text, prefix, ids)
}

/** The real path of an executable file (symlinks followed), or undefined. Reads the file system. */
function realExecutable(path: string): string | undefined {
  try {
    accessSync(path, constants.X_OK)
    return realpathSync(path)
  } catch {
    return undefined
  }
}

let cached: {prefix: string; rewrite: (text: string) => string} | undefined

/** The prefix for this process (probed once) and a rewriter of hints; `config` is oclif's (root and command ids). */
export function localInvocation(config: {root: string; commandIDs: string[]}): {
  prefix: string
  rewrite: (text: string) => string
} {
  if (!cached) {
    const self = realExecutable(join(config.root, 'bin', 'run.js')) ?? join(config.root, 'bin', 'run.js')
    const packageRoot = realpathOr(config.root)
    const prefix = invocationPrefix({
      env: process.env,
      self,
      packageRoot,
      cwd: realpathOr(process.cwd()),
      realExecutable,
    })
    cached = {prefix, rewrite: hintRewriter(prefix, config.commandIDs)}
  }
  return cached
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    return path
  }
}
