import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {open, rename, rm, stat} from 'node:fs/promises'

import * as tar from 'tar'

import {ExternalError} from '../../errors.js'

export interface ArchiveResult {
  file: string
  bytes: number
  sha256: string
}

/**
 * Writes a gzip tar of `paths` (relative to `dir`, at the archive root, in the given order) to
 * `output`: first to `output.partial`, fsynced, then renamed, so a reader never sees a half archive.
 */
export async function writeTarGz(dir: string, paths: string[], output: string): Promise<ArchiveResult> {
  const partial = `${output}.partial`
  try {
    await tar.create({gzip: true, cwd: dir, file: partial, portable: true, noDirRecurse: true}, paths)
    const handle = await open(partial, 'r+')
    await handle.sync()
    await handle.close()
    await rename(partial, output)
  } catch (error) {
    await rm(partial, {force: true})
    throw new ExternalError('ARCHIVE_FAILED', `Cannot write ${output}: ${(error as Error).message}.`, {cause: error})
  }
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(output)) hash.update(chunk as Buffer)
  return {file: output, bytes: (await stat(output)).size, sha256: hash.digest('hex')}
}

/** Lists the entry paths of a tar.gz (used by tests and by `bundle` to double-check its output). */
export async function listTarGz(file: string): Promise<string[]> {
  const entries: string[] = []
  await tar.list({file, onReadEntry: (entry) => entries.push(entry.path)})
  return entries
}
