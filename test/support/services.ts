import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import type {TestContext} from 'node:test'

import pg from 'pg'

export const IN_CI = process.env.MLFLOWCTL_TEST_IN_CI === '1'
export const REPO_ROOT = new URL('../..', import.meta.url).pathname

/**
 * Skips the test with a printed reason when a service is missing; under CI=true the same call fails
 * it, because in CI a skip is a failure.
 */
export function requireService(t: TestContext, available: boolean, reason: string): boolean {
  if (available) return true
  if (IN_CI) throw new Error(`required service missing under CI: ${reason}`)
  process.stderr.write(`SKIP ${t.name}: ${reason}\n`)
  t.skip(reason)
  return false
}

export interface TestVenv {
  mlflowVersion: string
  python: string
  key: string
}

/** The MLflow venvs that scripts/provision.mjs built (newest 3.x and last 2.x). */
export function testVenvs(): TestVenv[] {
  const file = join(process.env.MLFLOWCTL_CACHE_DIR!, 'test-venvs.json')
  if (!existsSync(file)) return []
  return (JSON.parse(readFileSync(file, 'utf8')) as TestVenv[]).filter((venv) => existsSync(venv.python))
}

export const NO_VENVS = 'no MLflow test venvs; run `node scripts/provision.mjs` (or `bash .ci/run`) first'

export function pgBaseUrl(): string | undefined {
  return process.env.MLFLOWCTL_TEST_PG_URL
}

export const NO_PG = 'MLFLOWCTL_TEST_PG_URL is not set; start PostgreSQL (`bash .ci/run` does) and export it'

/** Creates a fresh database and returns its URL. */
export async function createPgDatabase(name: string): Promise<string> {
  const base = pgBaseUrl()!
  const client = new pg.Client({connectionString: base})
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    await client.query(`CREATE DATABASE "${name}"`)
  } finally {
    await client.end()
  }
  const url = new URL(base)
  url.pathname = `/${name}`
  return url.toString()
}

/** Azurite's blob endpoint for the default dev account, started by scripts/test.mjs. */
export function azuriteBlobUrl(): string | undefined {
  return process.env.MLFLOWCTL_TEST_AZURITE_BLOB
}

export const NO_AZURITE =
  'Azurite is not running; run the tests through `npm test` (scripts/test.mjs starts it from node_modules)'
/** Azurite's published development account key (not a secret). */
export const AZURITE_ACCOUNT = {
  name: 'devstoreaccount1',
  key: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
}

/** The venv of a cloud mode's bundle (scripts/provision.mjs: newest 3.x with that cloud's SDKs), if built. */
export function cloudVenv(storage: 'aws' | 'azure' | 'gcp'): TestVenv | undefined {
  const file = join(process.env.MLFLOWCTL_CACHE_DIR!, 'cloud-venvs.json')
  if (!existsSync(file)) return undefined
  const venv = (JSON.parse(readFileSync(file, 'utf8')) as Record<string, TestVenv>)[storage]
  return venv && existsSync(venv.python) ? venv : undefined
}

/**
 * Runs a Python script with the extension's package importable (templates/extension), MLflow logging synchronously;
 * returns the last line it printed.
 */
const extensionEnv = (env: Record<string, string>) => ({
  ...process.env,
  ...env,
  PYTHONPATH: join(REPO_ROOT, 'templates', 'extension'),
  MLFLOW_ENABLE_ASYNC_LOGGING: 'false',
})

export function runWithExtension(python: string, script: string, args: string[], env: Record<string, string> = {}) {
  return execFileSync(python, ['-c', script, ...args], {encoding: 'utf8', env: extensionEnv(env)})
    .trim()
    .split('\n')
    .at(-1)!
}

/**
 * Starts such a script in the background: resolves with the process once it prints `ready` (its stdout after that is
 * collected in `output()`), rejects when it exits first.
 */
export function startWithExtension(
  python: string,
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{child: ChildProcess; output: () => string}> {
  const child = spawn(python, ['-c', script, ...args], {env: extensionEnv(env), stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      stdout += chunk
      if (/^ready$/m.test(stdout)) resolve({child, output: () => stdout})
    })
    child.on('exit', (code) => reject(new Error(`the script exited (${code}) before it was ready:\n${stderr}`)))
  })
}
