import {open, readFile, rename} from 'node:fs/promises'
import {dirname} from 'node:path'

import {previousSuccess, renderMetricsFile, type CommandRun} from '../../core/metrics-file.js'
import {fsFailure, syncDir} from './safe-fs.js'

/**
 * Writes the textfile as node-exporter's textfile collector expects: a temporary name it ignores (not *.prom) in the
 * same directory, then a rename, so a scrape never reads half a file. World-readable (0644): the collector runs as
 * its own user, and the file holds no secret.
 */
export async function writeMetricsFile(path: string, run: CommandRun): Promise<void> {
  const previous = await readFile(path, 'utf8').catch(() => undefined)
  const text = renderMetricsFile(run, previous)
  const temp = `${path}.${process.pid}.tmp`
  try {
    const handle = await open(temp, 'w', 0o644)
    try {
      await handle.writeFile(text)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temp, path)
  } catch (error) {
    throw fsFailure(error, 'write the metrics file', path)
  }
  await syncDir(dirname(path))
}

export {previousSuccess}
