// File-system steps that always end with a clear, typed error. Node's recursive mkdir never returns for a
// path under /proc (it retries ENOENT forever: `mkdir('/proc/x', {recursive: true})` hangs on Node 20 and 24),
// so directories are created one level at a time here.
import {lstat, mkdir, open, rename} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {ExternalError, UsageError, type MlflowctlError} from '../../errors.js'

/** A file-system failure as the error an operator can act on. Pure. */
export function fsFailure(error: unknown, action: string, path: string): MlflowctlError {
  const code = (error as NodeJS.ErrnoException).code ?? ''
  const reason: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'the disk quota is exhausted',
    EACCES: 'permission denied',
    EPERM: 'the operation is not permitted there',
    EROFS: 'the file system is read-only',
    ENOENT: 'a directory on the way does not exist and cannot be created',
    ENOTDIR: 'a part of the path is a file, not a directory',
    EISDIR: 'it is a directory',
    EXDEV: 'it is on another file system',
  }
  const why = reason[code] ?? (error as Error).message
  const message = `Cannot ${action} ${path}: ${why}.`
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new ExternalError('DISK_FULL', message, {
      suggestions: ['Free space on that file system (nothing was replaced), then run the command again.'],
      cause: error,
    })
  if (code === 'ENOTDIR' || code === 'EISDIR') return new UsageError('PATH_INVALID', message, {cause: error})
  return new ExternalError('PATH_UNUSABLE', message, {
    suggestions: ['Choose a writable local directory.'],
    cause: error,
  })
}

/** What is at a path, without following a final symlink. Reads only. */
export async function pathKind(path: string): Promise<'missing' | 'file' | 'dir' | 'other'> {
  try {
    const info = await lstat(path)
    return info.isDirectory() ? 'dir' : info.isFile() ? 'file' : 'other'
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    throw fsFailure(error, 'read', path)
  }
}

/** `mkdir -p` that always ends; new directories get `mode`. @throws PATH_UNUSABLE, PATH_INVALID, DISK_FULL */
export async function makeDirs(path: string, mode = 0o700): Promise<void> {
  const missing: string[] = []
  let current = resolve(path)
  for (;;) {
    const kind = await pathKind(current)
    if (kind === 'dir') break
    if (kind !== 'missing')
      throw fsFailure(Object.assign(new Error('not a directory'), {code: 'ENOTDIR'}), 'create the directory', path)
    missing.push(current)
    const parent = dirname(current)
    if (parent === current) break
    current = parent
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir, {mode})
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw fsFailure(error, 'create the directory', path)
    }
  }
}

/** Writes a file and fsyncs it, so a record written before a rename survives a crash. Private (0600) unless
 * `mode` says otherwise. */
export async function writeDurable(path: string, text: string | Uint8Array, mode = 0o600): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`
  const handle = await open(temp, 'w', mode)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temp, path)
  await syncDir(dirname(path))
}

/** fsyncs a directory so that renames in it are durable (best effort: some file systems refuse). */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined)
  if (!handle) return
  await handle.sync().catch(() => undefined)
  await handle.close()
}
