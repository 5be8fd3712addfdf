// Where a backup's artifacts come from: a local directory, or an object-store prefix whose objects are
// downloaded one at a time into scratch space, archived, and deleted before the next one (disk stays flat).
import {createReadStream} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {parseArtifactUrl} from '../../core/artifact-url.js'
import type {TableSchema} from '../../core/backup/format.js'
import {openObjectStore} from '../object-store.js'
import {walkArtifacts} from './repo-files.js'

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

/** Columns that hold artifact locations, per table (the experiment's root is not one: it covers everything). */
const LOCATION_COLUMNS: Record<string, string[]> = {
  runs: ['artifact_uri'],
  logged_models: ['artifact_location'],
  model_versions: ['source', 'storage_location'],
}
/** Traces keep theirs as a tag. */
const TRACE_LOCATION_TAG = 'mlflow.artifactLocation'

/** The artifact URIs in the exported rows, read from db/schema.json and the tables' JSON lines. */
export async function readReferences(exportDir: string): Promise<string[]> {
  const schema = JSON.parse(await readFile(join(exportDir, 'schema.json'), 'utf8')) as {tables: TableSchema[]}
  const uris: string[] = []
  for (const table of schema.tables) {
    if (table.name === 'trace_tags') {
      const [key, value] = ['key', 'value'].map((column) => table.columns.findIndex((c) => c.name === column))
      for await (const line of createInterface({
        input: createReadStream(join(exportDir, 'trace_tags.jsonl')),
        crlfDelay: Number.POSITIVE_INFINITY,
      })) {
        const row = JSON.parse(line) as unknown[]
        if (row[key] === TRACE_LOCATION_TAG && typeof row[value] === 'string') uris.push(row[value] as string)
      }
      continue
    }
    const positions = (LOCATION_COLUMNS[table.name] ?? [])
      .map((column) => table.columns.findIndex((c) => c.name === column))
      .filter((i) => i >= 0)
    if (positions.length === 0) continue
    for await (const line of createInterface({
      input: createReadStream(join(exportDir, `${table.name}.jsonl`)),
      crlfDelay: Number.POSITIVE_INFINITY,
    })) {
      const row = JSON.parse(line) as unknown[]
      for (const position of positions) if (typeof row[position] === 'string') uris.push(row[position] as string)
    }
  }
  return uris
}
