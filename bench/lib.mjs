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
