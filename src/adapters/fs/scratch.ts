// Scratch space of one run: a private directory (0700) under ROOT/.mlflowctl-scratch/, in the tree of the
// repository or target it serves (so moves into place are renames on one file system, and a full disk is the
// disk the operator looks at). It may hold plaintext (a SQLite snapshot, table files) even for an encrypted
// backup, so a run killed with -9 leaves it only until the next run that uses the same root: that run removes
// the directories of runs that are gone (their lease, fs/lease.ts: on any host, whatever PID they had), and says so.
import {randomBytes} from 'node:crypto'
import {mkdir, readFile, readdir, rm, rmdir, writeFile} from 'node:fs/promises'
import {hostname} from 'node:os'
import {dirname, join} from 'node:path'

import {faultPoint} from '../fault.js'
import {keepAlive, leasesAlive, me, readHolder, type LeaseHolder} from './lease.js'
import {fsFailure, makeDirs, pathKind} from './safe-fs.js'
import {JOURNAL} from './swap.js'

export const SCRATCH_DIR = '.mlflowctl-scratch'
const RUN_NAME = /^run-(\d+)-[0-9a-f]+@(.+)$/
/** Who made a run directory and when (its lease): written first, before anything else goes in. */
const LEASE_FILE = 'lease.json'

export interface Scratch {
  path: string
  remove(): Promise<void>
}

/** This process's open run directories: never another run's, whatever its lease says. */
const mine = new Set<string>()

/** The holder of a run directory: its lease file, else (a run of an older mlflowctl) its name. */
async function runHolder(dir: string, name: string): Promise<LeaseHolder> {
  const lease = await readFile(join(dir, LEASE_FILE), 'utf8').catch(() => undefined)
  if (lease !== undefined) return readHolder(lease)
  const match = RUN_NAME.exec(name)!
  return {pid: Number(match[1]), host: match[2]}
}

/**
 * The run directories under ROOT/.mlflowctl-scratch whose run is gone: on this host its process ended or its PID now
 * belongs to a later process; on another host its heartbeat stopped (fs/lease.ts). Reads only; may wait a few
 * seconds to see whether another host's run is still beating.
 */
export async function deadRuns(root: string): Promise<string[]> {
  const base = join(root, SCRATCH_DIR)
  const names = (await readdir(base).catch(() => [] as string[])).filter((name) => RUN_NAME.test(name)).sort()
  const runs: Array<{path: string; holder: LeaseHolder}> = []
  for (const name of names) {
    const path = join(base, name)
    if (!mine.has(path)) runs.push({path, holder: await runHolder(path, name)})
  }
  // Our own PID on a directory this process did not open: a run of an earlier process that had this PID.
  const earlier = (holder: LeaseHolder) => holder.pid === process.pid && holder.host === hostname()
  const alive = await leasesAlive(runs.filter((run) => !earlier(run.holder)))
  let at = 0
  return runs.filter((run) => earlier(run.holder) || !alive[at++]).map((run) => run.path)
}

/** Removes the given dead runs' directories; returns them, for the "removed debris" warning. */
export async function removeRuns(dirs: string[]): Promise<string[]> {
  for (const dir of dirs) {
    await rm(dir, {recursive: true, force: true})
    await rmdir(dirname(dir)).catch(() => undefined) // the base too, once no run uses it
  }
  return dirs
}

/** Creates this run's private scratch directory under ROOT, with its lease. @throws DISK_FULL, PATH_UNUSABLE */
export async function openScratch(root: string): Promise<Scratch> {
  const base = join(root, SCRATCH_DIR)
  await makeDirs(base)
  const path = join(base, `run-${process.pid}-${randomBytes(4).toString('hex')}@${hostname()}`)
  const heartbeat = {stop: () => undefined as void}
  // The base goes too once no run uses it, so a repository or data directory is left as it was.
  const remove = async () => {
    heartbeat.stop()
    mine.delete(path)
    // A swap that could not put the old data back (the target changed under it) left its journal and the old data
    // here: they stay for the next run, which sees this run gone and settles it (swap.ts).
    if ((await pathKind(join(path, JOURNAL))) !== 'missing') return
    await rm(path, {recursive: true, force: true})
    await rmdir(base).catch(() => undefined)
  }
  try {
    await mkdir(path, {mode: 0o700})
    mine.add(path)
    await writeFile(join(path, LEASE_FILE), JSON.stringify(me()), {mode: 0o600})
  } catch (error) {
    await remove()
    throw fsFailure(error, 'create', path)
  }
  heartbeat.stop = keepAlive(path)
  faultPoint('scratch:created')
  return {path, remove}
}
