// A local directory as a store: the backend for a path without a scheme.
import {copyFile, open, readFile, readdir, rename, rm, stat, unlink} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'

import {makeDirs, pathKind, syncDir, writeDurable} from '../fs/safe-fs.js'
import type {Store, StoreEntry} from './store.js'

/** A name as an operator can read it: printable ASCII as it is, every other byte as \\xNN. Pure. */
export function printableName(name: Buffer): string {
  return [...name]
    .map((byte) =>
      byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`,
    )
    .join('')
}

/** Written beside the target and renamed over it: a reader sees the old object or the new one, never a part. */
const temporary = (path: string) => `${path}.${process.pid}.${Date.now()}.partial`

export function directoryStore(root: string): Store {
  const at = (key: string) => join(root, ...key.split('/'))
  // A live store changes while it is walked: a directory or file deleted meanwhile (retention, compaction) is simply
  // not listed, as an object store's listing would not list it.
  const gone = (error: unknown) =>
    (error as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : Promise.reject(error)

  /** Files named byte for byte (a backslash is an ordinary character on Linux), sorted by name in each directory;
   * symlinks are not followed. A name that is not valid UTF-8 cannot be a key: it is skipped and reported. */
  async function* walk(dir: string, relative: string, onSkip?: (shown: string) => void): AsyncIterable<StoreEntry> {
    const listed = await readdir(dir, {withFileTypes: true, encoding: 'buffer'}).catch(gone)
    for (const entry of (listed ?? []).sort((a, b) => Buffer.compare(a.name, b.name))) {
      const name = entry.name.toString('utf8')
      if (!Buffer.from(name, 'utf8').equals(entry.name)) {
        onSkip?.(`${relative}${printableName(entry.name)}${entry.isDirectory() ? '/' : ''}`)
        continue
      }
      const path = join(dir, name)
      if (entry.isDirectory()) yield* walk(path, `${relative}${name}/`, onSkip)
      else if (entry.isFile()) {
        // As restic compares a file with its parent snapshot's: mtime and ctime in nanoseconds, and the inode. A tool
        // that puts the mtime back after a rewrite (touch -r, cp -p) cannot put back the ctime.
        const info = await stat(path, {bigint: true}).catch(gone)
        if (info)
          yield {
            key: `${relative}${name}`,
            size: Number(info.size),
            version: `${info.mtimeNs}/${info.ctimeNs}/${info.ino}`,
          }
      }
    }
  }

  const place = async (key: string, write: (temp: string) => Promise<void>) => {
    const path = at(key)
    await makeDirs(dirname(path))
    const temp = temporary(path)
    try {
      await write(temp)
      await rename(temp, path)
    } catch (error) {
      await rm(temp, {force: true})
      throw error
    }
    await syncDir(dirname(path))
  }

  return {
    display: root,
    async *entries(prefix, onSkip) {
      // A key prefix, not only a directory: 'generations/g1' lists generations/g1/… and generations/g10/….
      const cut = prefix.lastIndexOf('/') + 1
      const dir = prefix.slice(0, cut)
      if ((await pathKind(at(dir || '.'))) !== 'dir') return
      for await (const entry of walk(resolve(at(dir || '.')), dir, onSkip))
        if (entry.key.startsWith(prefix)) yield entry
    },
    get: (key) => readFile(at(key)),
    async put(key, body) {
      await makeDirs(dirname(at(key)))
      await writeDurable(at(key), body)
    },
    async putIfAbsent(key, body) {
      const path = at(key)
      await makeDirs(dirname(path))
      const handle = await open(path, 'wx', 0o600).catch((error: NodeJS.ErrnoException) =>
        error.code === 'EEXIST' ? undefined : Promise.reject(error),
      )
      if (!handle) return false
      try {
        await handle.writeFile(body)
        await handle.sync()
      } finally {
        await handle.close()
      }
      return true
    },
    delete: (key) => unlink(at(key)),
    uploadFile: (key, file) => place(key, (temp) => copyFile(file, temp)),
    downloadFile: (key, file) => copyFile(at(key), file),
    describe: async () => ({exists: (await pathKind(root)) === 'dir'}),
    localPath: (key) => at(key),
  }
}
