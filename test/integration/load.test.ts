// A team's concurrent load on one process, in both app modes: 8
// REST clients for 10 s (runs, metric batches, tags, artifacts through the proxy, searches) against the extension on
// local storage, hosted as Connect-like hosts run it (uvicorn; gunicorn gthread with 20 threads). No request fails,
// and nothing acknowledged is lost. Before the extension bounded its handler threads and sized MLflow's pool, requests
// waited 30 s for a pool connection and failed with "QueuePool limit ... reached" under such load.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {cpSync, existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {after, describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {appCommand} from '../../src/adapters/dev/app-command.js'
import {lostWrites, quantile, runLoad} from '../../bench/load-client.mjs'
import {tempDir} from '../support/cli.js'
import {NO_VENVS, REPO_ROOT, requireService, testVenvs} from '../support/services.js'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))

async function startExtension(appMode: 'python-fastapi' | 'python-api') {
  const work = tempDir('load-')
  const bundle = join(work, 'bundle')
  cpSync(join(REPO_ROOT, 'templates', 'extension'), bundle, {
    recursive: true,
    filter: (path) => !/\/(tests|__pycache__)(\/|$)|\.tmpl$/.test(path),
  })
  writeFileSync(join(bundle, 'mlflowctl.json'), JSON.stringify({mlflowVersion: venv!.mlflowVersion, appMode}))
  const data = join(work, 'data')
  mkdirSync(data)
  const port = 20000 + Math.floor(Math.random() * 20000)
  const server = spawn(venv!.python, appCommand(appMode, port), {
    cwd: bundle,
    env: {PATH: process.env.PATH, HOME: process.env.HOME, CONNECT_CONTENT_DATA_DIR: data},
    detached: true,
    stdio: 'ignore',
  })
  after(() => {
    try {
      process.kill(-server.pid!, 'SIGKILL')
    } catch {
      // gone
    }
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 180_000
  while (
    !(await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    assert.ok(Date.now() < deadline && server.exitCode === null, `the ${appMode} server did not start`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  return {url, data}
}

describe('a team of 8 clients on one process', () => {
  for (const appMode of ['python-fastapi', 'python-api'] as const) {
    it(`${appMode}: no request fails and nothing acknowledged is lost`, async (t) => {
      if (!requireService(t, Boolean(venv), NO_VENVS)) return
      const {url, data} = await startExtension(appMode)
      const load = await runLoad({baseUrl: url, clients: 8, seconds: 10})
      assert.deepEqual(load.failures.slice(0, 5), [], `${load.failures.length} of ${load.requests} requests failed`)
      assert.ok(load.runs.size > 0, 'runs were created')
      const db = new Database(join(data, 'mlflow.db'), {readonly: true})
      const rows = db.prepare('SELECT count(*) FROM metrics WHERE run_uuid = ?').pluck()
      const lost = await lostWrites(
        load.runs,
        async (runId: string) => rows.get(runId) as number,
        async (runId: string) => existsSync(join(data, 'artifacts', '0', runId, 'artifacts', 'blob.bin')),
      )
      db.close()
      assert.deepEqual(lost, [])
      t.diagnostic(
        `${appMode}: ${load.requests} requests, ${load.runs.size} runs, p99 ${Math.round(quantile(load.latencies, 0.99))} ms`,
      )
    })
  }
})
