// Runs a command class in this process with the composition root replaced (MlflowctlCommand.createDeps), and
// captures what it prints and the exit code it sets: flags → options, the --json envelope and exit codes,
// tested without Connect, databases or Python.
import {Config} from '@oclif/core'
import {fileURLToPath} from 'node:url'

import {MlflowctlCommand} from '../../src/base-command.js'
import {createDeps, type CommandDeps} from '../../src/compose/command-deps.js'
import type {CliResult} from './cli.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
let config: Config | undefined

/** The same shape as a child-process run (test/support/cli.ts), so assertions read alike. */
export type InProcessResult = CliResult

export async function runInProcess(
  command: {run(argv: string[], config: Config): Promise<unknown>},
  argv: string[],
  options: {deps?: Partial<CommandDeps>; env?: Record<string, string | undefined>} = {},
): Promise<InProcessResult> {
  config ??= await Config.load(ROOT)
  const savedEnv = Object.fromEntries(Object.keys(options.env ?? {}).map((key) => [key, process.env[key]]))
  const setEnv = (values: Record<string, string | undefined>) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
  const writes = {stdout: '', stderr: ''}
  const realStreams = MlflowctlCommand.streams
  const savedFactory = MlflowctlCommand.createDeps
  const savedExitCode = process.exitCode
  setEnv(options.env ?? {})
  MlflowctlCommand.createDeps = () => ({...createDeps(), ...options.deps})
  process.exitCode = undefined
  // Not process.stdout: under `node --test` it carries the runner's own reports.
  MlflowctlCommand.streams = {
    stdout: (text) => void (writes.stdout += text),
    stderr: (text) => void (writes.stderr += text),
  }
  let code: number
  try {
    await command.run(argv, config)
  } finally {
    MlflowctlCommand.streams = realStreams
    code = Number(process.exitCode ?? 0)
    process.exitCode = savedExitCode
    MlflowctlCommand.createDeps = savedFactory
    setEnv(savedEnv)
    process.removeAllListeners('SIGINT')
  }
  let json
  try {
    json = JSON.parse(writes.stdout)
  } catch {
    json = undefined
  }
  return {code, ...writes, json}
}
