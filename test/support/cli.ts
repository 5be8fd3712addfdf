import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, readdirSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

export interface CliResult {
  code: number
  stdout: string
  stderr: string
  /** The parsed stdout when it is JSON. */
  json?: {
    status: number
    result?: any
    warnings?: string[]
    error?: {code: string; message: string; suggestions: string[]}
  }
}

/** Runs the built CLI (bin/run.js) as a user would, as a child process. */
export function runCli(
  args: string[],
  options: {env?: Record<string, string | undefined>; timeoutMs?: number; cwd?: string} = {},
): Promise<CliResult> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUN, ...args], {
      env: {...process.env, ...options.env},
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      traceStep(
        `mlflowctl ${args
          .filter((arg) => !arg.startsWith('--json'))
          .slice(0, 3)
          .join(' ')}`,
        started,
      )
      let json
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      resolve({code: code ?? -1, stdout, stderr, json})
    })
  })
}

export function tempDir(prefix = 'mlflowctl-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** With MLFLOWCTL_TEST_TRACE=1, each CLI and client call prints its wall time to stderr (to find where a test's time goes). */
export function traceStep(label: string, started: number): void {
  if (process.env.MLFLOWCTL_TEST_TRACE)
    process.stderr.write(`[trace] ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${label}\n`)
}

/**
 * Starts the CLI and pauses it (SIGSTOP) as soon as its scratch space appears under `scratchRoot`: a run caught in
 * the middle of its work, alive, holding whatever it holds. Resume it with `resumed`.
 */
export function pausedWhileWorking(
  args: string[],
  scratchRoot: string,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [RUN, ...args, '--json'], {
    env: {...process.env, ...env},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const working = () => {
    try {
      return readdirSync(join(scratchRoot, '.mlflowctl-scratch')).some((name) => name.startsWith(`run-${child.pid}-`))
    } catch {
      return false
    }
  }
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (!working()) return
      clearInterval(poll)
      child.kill('SIGSTOP')
      resolve(child)
    }, 10)
    child.once('exit', () => {
      clearInterval(poll)
      reject(new Error(`it ended before it was caught working: ${stderr.slice(-600)}`))
    })
  })
}

/** Resumes a CLI paused by pausedWhileWorking and returns its result. */
export function resumed(child: ChildProcess): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => (stdout += chunk))
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  child.kill('SIGCONT')
  return new Promise((resolve) =>
    child.once('close', (code) => {
      let json
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      resolve({code: code ?? -1, stdout, stderr, json})
    }),
  )
}
