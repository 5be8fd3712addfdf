// Where a backup's artifacts come from: a local directory, or an object-store prefix whose objects are
// downloaded one at a time into scratch space, archived, and deleted before the next one (disk stays flat).
import {createReadStream} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {parseArtifactUrl} from '../../core/artifact-url.js'
import {locationPositions} from '../../core/backup/artifact-locations.js'
import type {TableSchema} from '../../core/backup/format.js'
import {openObjectStore} from '../object-store.js'
import {walkArtifacts} from './repo-files.js'
import {parseTableLine, tableFileOf} from './table-files.js'

export async function* objectStoreArtifacts(
  url: string,
  include: (path: string) => boolean = () => true,
): AsyncIterable<{name: string; file: string}> {
  const location = parseArtifactUrl(url)
  const store = await openObjectStore(location)
  const prefix = location.prefix ? `${location.prefix}/` : ''
  const scratch = await mkdtemp(join(tmpdir(), 'mlflowctl-artifact-'))
  try {
    for (const object of (await store.list(prefix)).sort((a, b) => a.key.localeCompare(b.key))) {
      if (object.key.endsWith('/') || !include(object.key.slice(prefix.length))) continue // placeholders; unreferenced (never downloaded)
      const file = join(scratch, 'object')
      await store.downloadFile(object.key, file)
      yield {name: `artifacts/${object.key.slice(prefix.length)}`, file}
      await rm(file, {force: true}) // the archive has read it by the time the next one is asked for
    }
  } finally {
    await rm(scratch, {recursive: true, force: true})
  }
}

export async function* listArtifacts(
  source: string,
  include: (path: string) => boolean = () => true,
): AsyncIterable<{name: string; file: string}> {
  if (/^(s3|wasbs|gs):\/\//.test(source)) {
    yield* objectStoreArtifacts(source, include)
    return
  }
  for await (const entry of walkArtifacts(source)) if (include(entry.name.slice('artifacts/'.length))) yield entry
}

/** The artifact URIs in the exported rows (every location column but the experiment's root, which covers
 * everything), read from db/schema.json and the table files (JSON lines, or COPY text of a PostgreSQL source). */
export async function readReferences(exportDir: string): Promise<string[]> {
  const schema = JSON.parse(await readFile(join(exportDir, 'schema.json'), 'utf8')) as {tables: TableSchema[]}
  const uris: string[] = []
  for (const table of schema.tables) {
    const targets = table.name === 'experiments' ? [] : locationPositions(table)
    const found = targets.length > 0 ? await tableFileOf(exportDir, table.name) : undefined
    if (!found) continue
    for await (const line of createInterface({
      input: createReadStream(found.file),
      crlfDelay: Number.POSITIVE_INFINITY,
    })) {
      const row = parseTableLine(line, found.encoding)
      for (const {at, where} of targets)
        if (typeof row[at] === 'string' && (!where || row[where.at] === where.equals)) uris.push(row[at] as string)
    }
  }
  return uris
}
