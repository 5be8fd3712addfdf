// Scratch space of one run: a private directory (0700) under ROOT/.mlflowctl-scratch/, in the tree of the
// repository or target it serves (so moves into place are renames on one file system, and a full disk is the
// disk the operator looks at). It may hold plaintext (a SQLite snapshot, table files) even for an encrypted
// backup, so a run killed with -9 leaves it only until the next run that uses the same root: that run removes
// the directories of runs whose process is gone, and says so.
import {randomBytes} from 'node:crypto'
import {mkdir, readdir, rm, rmdir} from 'node:fs/promises'
import {hostname} from 'node:os'
import {dirname, join} from 'node:path'

import {faultPoint} from '../fault.js'
import {fsFailure, makeDirs} from './safe-fs.js'

export const SCRATCH_DIR = '.mlflowctl-scratch'
const RUN_NAME = /^run-(\d+)-[0-9a-f]+@(.+)$/

export interface Scratch {
  path: string
  remove(): Promise<void>
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

/** The run directories under ROOT/.mlflowctl-scratch whose process is gone (same host only). Reads only. */
export async function deadRuns(root: string): Promise<string[]> {
  const base = join(root, SCRATCH_DIR)
  const names = await readdir(base).catch(() => [] as string[])
  return names
    .filter((name) => {
      const match = RUN_NAME.exec(name)
      return (
        match !== null && match[2] === hostname() && Number(match[1]) !== process.pid && !processAlive(Number(match[1]))
      )
    })
    .map((name) => join(base, name))
}

/** Removes the given dead runs' directories; returns them, for the "removed debris" warning. */
export async function removeRuns(dirs: string[]): Promise<string[]> {
  for (const dir of dirs) {
    await rm(dir, {recursive: true, force: true})
    await rmdir(dirname(dir)).catch(() => undefined) // the base too, once no run uses it
  }
  return dirs
}

/** Creates this run's private scratch directory under ROOT. @throws DISK_FULL, PATH_UNUSABLE */
export async function openScratch(root: string): Promise<Scratch> {
  const base = join(root, SCRATCH_DIR)
  await makeDirs(base)
  const path = join(base, `run-${process.pid}-${randomBytes(4).toString('hex')}@${hostname()}`)
  // The base goes too once no run uses it, so a repository or data directory is left as it was.
  const remove = async () => {
    await rm(path, {recursive: true, force: true})
    await rmdir(base).catch(() => undefined)
  }
  try {
    await mkdir(path, {mode: 0o700})
  } catch (error) {
    await remove()
    throw fsFailure(error, 'create', path)
  }
  faultPoint('scratch:created')
  return {path, remove}
}
