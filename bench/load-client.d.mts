// Types of load-client.mjs, for the integration test that imports it.
export interface LoadResult {
  requests: number
  seconds: number
  latencies: number[]
  failures: Array<{what: string; detail: string}>
  runs: Map<string, {batches: number; artifact: boolean}>
}

export function runLoad(options: {
  baseUrl: string
  clients: number
  seconds: number
  headers?: Record<string, string>
  timeoutMs?: number
}): Promise<LoadResult>

export function lostWrites(
  runs: LoadResult['runs'],
  metricRows: (runId: string) => Promise<number>,
  artifactExists: (runId: string) => Promise<boolean>,
): Promise<string[]>

export function quantile(xs: number[], q: number): number
