// Leases: whether the run that holds a lock or a scratch directory is still alive, decided without trusting a
// PID or a host name alone. On the same host a process that is gone, or that started after the lease was taken
// (its PID was reused), holds nothing. A holder on another host (a Connect container restarts under a new name,
// a cron host shares the data directory) proves it is alive by touching its lease every two seconds from a
// worker thread, which keeps beating while the main thread runs a long synchronous SQLite call. Such a lease is
// judged by our own observation of its mtime (fresh, or changed while we watch), so clocks need not agree.
import {readFileSync} from 'node:fs'
import {stat} from 'node:fs/promises'
import {hostname} from 'node:os'
import {Worker} from 'node:worker_threads'

const BEAT_MS = 2_000
/** A lease touched this recently (by our clock) is alive, whoever holds it. */
const FRESH_MS = 15_000
/** Any other lease of another host is watched this long for a beat before it is judged dead. */
const WATCH_MS = 5_000
/**
 * A lease touched "after" our clock's now by less than this is fresh too: the file system stamps times from a
 * clock of its own (coarse, with sub-millisecond digits Date.now() drops), so a lease written a moment ago can look
 * a little in the future. Seen on a loaded CI machine: a directory made just before the check was judged stale.
 */
const CLOCK_SLACK_MS = 1_000
/**
 * How far a process's start time read from /proc can be off (the boot time there has whole seconds): a process that
 * started more than this after the lease was taken cannot be its holder (its PID was reused), one that started more
 * than this before can be; in between, the heartbeat decides.
 */
const START_SLACK_MS = 1_500

export interface LeaseHolder {
  pid?: number
  host?: string
  /** ISO time at which the holder took the lease. */
  startedAt?: string
  /** What the holder is doing ("restore", "backup"), for the refusal. */
  purpose?: string
}

/** This process as a lease holder. */
export const me = (): Required<Omit<LeaseHolder, 'purpose'>> => ({
  pid: process.pid,
  host: hostname(),
  startedAt: new Date().toISOString(),
})

// The heartbeat runs as plain JavaScript in a worker (no module file: the same code under tsx and once built).
const HEARTBEAT_WORKER = `
const {parentPort} = require('node:worker_threads')
const {utimesSync} = require('node:fs')
const paths = new Set()
const touch = (path) => { const now = new Date(); try { utimesSync(path, now, now) } catch {} }
parentPort.on('message', ({add, remove}) => { if (add) { paths.add(add); touch(add) } if (remove) paths.delete(remove) })
setInterval(() => { for (const path of paths) touch(path) }, ${BEAT_MS})
`

let worker: Worker | undefined

/** Touches `path` every two seconds until the returned function is called (or the process ends). */
export function keepAlive(path: string): () => void {
  if (!worker) {
    worker = new Worker(HEARTBEAT_WORKER, {eval: true})
    worker.unref() // the heartbeat never keeps a finished command alive
    worker.on('error', () => (worker = undefined))
  }
  worker.postMessage({add: path})
  return () => worker?.postMessage({remove: path})
}

/** When a local process started (epoch ms), from /proc; undefined where that cannot be read. */
function processStartedAt(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    const ticksAfterBoot = Number(fields[19]) // field 22 of proc(5): starttime, in clock ticks
    const boot = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]
    if (!boot || !Number.isFinite(ticksAfterBoot)) return undefined
    return Number(boot) * 1000 + (ticksAfterBoot / 100) * 1000 // USER_HZ is 100 on Linux
  } catch {
    return undefined
  }
}

/** Whether a process is alive on this host (EPERM: alive, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A same-host holder's verdict from its PID alone, or undefined when only its heartbeat can tell. */
function localVerdict(holder: LeaseHolder): boolean | undefined {
  if (holder.host !== hostname() || typeof holder.pid !== 'number') return undefined
  if (holder.pid !== process.pid && !processAlive(holder.pid)) return false
  // A lease older than its PID's process was taken by another process that had the same PID.
  const started = holder.pid === process.pid ? Date.now() - process.uptime() * 1000 : processStartedAt(holder.pid)
  const taken = holder.startedAt ? Date.parse(holder.startedAt) : Number.NaN
  if (started === undefined || !Number.isFinite(taken)) return true
  if (started > taken + START_SLACK_MS) return false
  return started < taken - START_SLACK_MS ? true : undefined
}

const mtimeOf = async (path: string) => (await stat(path).catch(() => undefined))?.mtimeMs

/**
 * Which of the leases are alive: a same-host holder by its process, any other by a beat seen on its lease
 * (fresh, or a change within one watch). A lease whose path is gone is dead. Waits up to WATCH_MS, once for all.
 */
export async function leasesAlive(leases: Array<{path: string; holder: LeaseHolder}>): Promise<boolean[]> {
  const verdicts: Array<boolean | undefined> = []
  const seen: Array<number | undefined> = []
  for (const {path, holder} of leases) {
    const mtime = await mtimeOf(path)
    seen.push(mtime)
    const age = mtime === undefined ? undefined : Date.now() - mtime
    verdicts.push(
      mtime === undefined
        ? false
        : (localVerdict(holder) ?? (age! > -CLOCK_SLACK_MS && age! < FRESH_MS ? true : undefined)),
    )
  }
  if (verdicts.every((verdict) => verdict !== undefined)) return verdicts as boolean[]
  await new Promise((resolve) => setTimeout(resolve, WATCH_MS))
  return Promise.all(verdicts.map(async (verdict, at) => verdict ?? (await mtimeOf(leases[at].path)) !== seen[at]))
}

/** The holder written in a lease file (JSON), or {} when it cannot be read. */
export function readHolder(text: string): LeaseHolder {
  try {
    const parsed = JSON.parse(text) as LeaseHolder
    return parsed && typeof parsed === 'object' ? parsed : {}
  } catch {
    return {}
  }
}
