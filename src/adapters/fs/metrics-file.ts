import {readFile} from 'node:fs/promises'

import {renderMetricsFile, type CommandRun} from '../../core/metrics-file.js'
import {fsFailure, writeDurable} from './safe-fs.js'

/**
 * Writes the textfile as node-exporter's textfile collector expects: a temporary name it ignores (not *.prom) in the
 * same directory, then a rename, so a scrape never reads half a file. World-readable (0644): the collector runs as
 * its own user, and the file holds no secret.
 */
export async function writeMetricsFile(path: string, run: CommandRun): Promise<void> {
  const previous = await readFile(path, 'utf8').catch(() => undefined)
  await writeDurable(path, renderMetricsFile(run, previous), 0o644).catch((error: unknown) => {
    throw fsFailure(error, 'write the metrics file', path)
  })
}
