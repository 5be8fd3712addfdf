// What the benchmarks share: the repository root, numeric flags, and the peak memory of a process tree.
import {readFileSync, readdirSync} from 'node:fs'
import {createServer} from 'node:net'
import {fileURLToPath} from 'node:url'

export const root = fileURLToPath(new URL('..', import.meta.url))

/** `--name N` as a number, or the fallback. */
export const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}

/** A port free on 127.0.0.1 now. */
export const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address()
      server.close(() => resolve(port))
    })
  })

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A process and all its descendants (from /proc). */
export function treePids(pid) {
  const children = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(pid)
      } catch {
        return false
      }
    })
  return [pid, ...children.flatMap((c) => treePids(Number(c)))]
}

/** The sum of the peak RSS (VmHWM) of a process tree, in MiB. */
export const peakRssMiB = (pid) =>
  treePids(pid).reduce((sum, p) => {
    try {
      return sum + Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]) / 1024
    } catch {
      return sum
    }
  }, 0)

/** Waits until `${base}/health` answers 200; fails when `child` exits first, or after `seconds`. */
export async function waitHealthy(base, {child, seconds = 180} = {}) {
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`)
    try {
      if ((await fetch(`${base}/health`)).ok) return
    } catch {
      // not listening yet
    }
    await sleep(200)
  }
  throw new Error(`${base} did not become healthy within ${seconds} s`)
}

/** A caller of MLflow's REST API under `base`: POSTs JSON to /api/2.0/mlflow/PATH, fails on an error answer. */
export const mlflowRest = (base) => async (path, body) => {
  const answer = await fetch(`${base}/api/2.0/mlflow/${path}`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(body),
  })
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status} ${await answer.text()}`)
  return answer.json()
}
