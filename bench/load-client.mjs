// A team's load on one MLflow server, shared by bench/load.mjs and the integration test that guards it:
// `clients` concurrent REST clients, each looping for `seconds`: create a run, log-batch 100 metrics five times, set
// a tag, upload and download a 64 KiB artifact through the artifact proxy, search runs, end the run. Every request
// is timed; a failure is an HTTP status other than 2xx, a network error, or no answer within `timeoutMs`. What was
// acknowledged is kept, so that the caller can check that none of it was lost.
import {randomBytes} from 'node:crypto'
import {performance} from 'node:perf_hooks'

const BATCHES = 5
const METRICS_PER_BATCH = 100
const ARTIFACT = randomBytes(64 * 1024)

/**
 * Runs the load. Returns the requests made, the elapsed seconds, every request's latency (ms), the failures
 * ({what, detail}) and the runs created with what each had acknowledged ({batches, artifact}).
 * @param {{baseUrl: string, clients: number, seconds: number, headers?: Record<string, string>, timeoutMs?: number}} options
 */
export async function runLoad({baseUrl, clients, seconds, headers = {}, timeoutMs = 60_000}) {
  const base = baseUrl.replace(/\/$/, '')
  const latencies = []
  const failures = []
  const runs = new Map()
  const deadline = Date.now() + seconds * 1000
  const started = performance.now()

  async function call(what, method, path, body, contentType = 'application/json') {
    const begun = performance.now()
    try {
      const answer = await fetch(`${base}${path}`, {
        method,
        headers: {...headers, ...(body ? {'Content-Type': contentType} : {})},
        body: body === undefined ? undefined : contentType === 'application/json' ? JSON.stringify(body) : body,
        signal: AbortSignal.timeout(timeoutMs),
      })
      const payload = Buffer.from(await answer.arrayBuffer())
      latencies.push(performance.now() - begun)
      if (answer.status < 200 || answer.status >= 300) {
        failures.push({what, detail: `HTTP ${answer.status}: ${payload.toString('utf8').slice(0, 200)}`})
        return undefined
      }
      return payload
    } catch (error) {
      latencies.push(performance.now() - begun)
      failures.push({what, detail: error.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : error.message})
      return undefined
    }
  }

  async function client() {
    while (Date.now() < deadline) {
      const created = await call('runs/create', 'POST', '/api/2.0/mlflow/runs/create', {
        experiment_id: '0',
        start_time: Date.now(),
      })
      if (!created) continue
      const runId = JSON.parse(created.toString('utf8')).run.info.run_id
      const acknowledged = {batches: 0, artifact: false}
      runs.set(runId, acknowledged)
      for (let batch = 0; batch < BATCHES; batch++) {
        const metrics = Array.from({length: METRICS_PER_BATCH}, (_, i) => ({
          key: `m${i}`,
          value: Math.random(),
          timestamp: Date.now(),
          step: batch,
        }))
        if (await call('runs/log-batch', 'POST', '/api/2.0/mlflow/runs/log-batch', {run_id: runId, metrics}))
          acknowledged.batches++
      }
      await call('runs/set-tag', 'POST', '/api/2.0/mlflow/runs/set-tag', {run_id: runId, key: 'team', value: 'bench'})
      const artifact = `/api/2.0/mlflow-artifacts/artifacts/0/${runId}/artifacts/blob.bin`
      if (await call('artifacts/upload', 'PUT', artifact, ARTIFACT, 'application/octet-stream')) {
        acknowledged.artifact = true
        const downloaded = await call('artifacts/download', 'GET', artifact)
        if (downloaded && !downloaded.equals(ARTIFACT))
          failures.push({what: 'artifacts/download', detail: 'the bytes differ from the upload'})
      }
      await call('runs/search', 'POST', '/api/2.0/mlflow/runs/search', {experiment_ids: ['0'], max_results: 10})
      await call('runs/update', 'POST', '/api/2.0/mlflow/runs/update', {
        run_id: runId,
        status: 'FINISHED',
        end_time: Date.now(),
      })
    }
  }

  await Promise.all(Array.from({length: clients}, client))
  return {requests: latencies.length, seconds: (performance.now() - started) / 1000, latencies, failures, runs}
}

/**
 * What was acknowledged and is not stored: runs whose metric rows are fewer than their acknowledged batches times
 * 100, and acknowledged artifacts that are missing. `metricRows(runId)` and `artifactExists(runId)` read the store.
 */
export async function lostWrites(runs, metricRows, artifactExists) {
  const lost = []
  for (const [runId, acknowledged] of runs) {
    const rows = await metricRows(runId)
    if (rows < acknowledged.batches * METRICS_PER_BATCH)
      lost.push(`${runId}: ${rows} metric rows, ${acknowledged.batches * METRICS_PER_BATCH} acknowledged`)
    if (acknowledged.artifact && !(await artifactExists(runId))) lost.push(`${runId}: its acknowledged artifact`)
  }
  return lost
}

/** The q-quantile of a list of numbers. */
export const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]
