// What a path holds, cheaply and exactly enough to tell whether anyone touched it: a file by its inode, size and
// mtime (SQLite changes the mtime on every write), a directory by the inode, size and mtime of every file and the
// inode of every directory below it. A rename keeps all of these, so data swapped in by a restore still has the
// fingerprint it had in scratch space until someone writes to it.
import {createHash} from 'node:crypto'
import {lstat, readdir} from 'node:fs/promises'
import {join} from 'node:path'

export interface Fingerprint {
  kind: 'file' | 'dir' | 'other'
  ino: number
  size: number
  mtimeMs: number
  /** A directory: SHA-256 over every entry below it (path, kind, inode, and size and mtime for files). */
  tree?: string
}

async function walk(dir: string, relative: string, lines: string[]): Promise<void> {
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name)
    const info = await lstat(path).catch(() => undefined)
    if (!info) {
      lines.push(`${relative}${name}\0gone`)
      continue
    }
    if (info.isDirectory()) {
      lines.push(`${relative}${name}\0dir\0${info.ino}`)
      await walk(path, `${relative}${name}/`, lines)
    } else
      lines.push(`${relative}${name}\0${info.isFile() ? 'file' : 'other'}\0${info.ino}\0${info.size}\0${info.mtimeMs}`)
  }
}

/**
 * The fingerprint of what is at `path` now, or undefined when nothing is; `shallow` leaves a directory's tree out
 * (its inode alone says whether it is still the same directory). Reads only.
 */
export async function fingerprint(path: string, shallow = false): Promise<Fingerprint | undefined> {
  const info = await lstat(path).catch((error: NodeJS.ErrnoException) =>
    error.code === 'ENOENT' ? undefined : Promise.reject(error),
  )
  if (!info) return undefined
  if (!info.isDirectory())
    return {kind: info.isFile() ? 'file' : 'other', ino: info.ino, size: info.size, mtimeMs: info.mtimeMs}
  if (shallow) return {kind: 'dir', ino: info.ino, size: 0, mtimeMs: 0}
  const lines: string[] = []
  await walk(path, '', lines)
  // The directory's own mtime is left out: a rename into another directory may change it.
  return {
    kind: 'dir',
    ino: info.ino,
    size: 0,
    mtimeMs: 0,
    tree: createHash('sha256').update(lines.join('\n')).digest('hex'),
  }
}

/** Whether two fingerprints are of the same untouched data. Pure. */
export function samePrint(a: Fingerprint | undefined, b: Fingerprint | undefined): boolean {
  if (!a || !b) return a === b
  return a.kind === b.kind && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.tree === b.tree
}

/** What a fingerprint says, for an operator ("a file of 1.2 MiB, modified 2026-12-06T10:00:00Z"). Pure. */
export function describePrint(print: Fingerprint | undefined): string {
  if (!print) return 'nothing'
  if (print.kind === 'dir') return 'a directory'
  if (print.kind === 'other') return 'something that is neither a file nor a directory'
  return `a file of ${print.size} bytes, modified ${new Date(print.mtimeMs).toISOString()}`
}
