// Where a backup's artifacts come from: a local directory, or an object-store prefix whose objects are
// downloaded one at a time into scratch space, archived, and deleted before the next one (disk stays flat).
import {createReadStream} from 'node:fs'
import {mkdtemp, readFile, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {parseArtifactUrl} from '../../core/artifact-url.js'
import {locationPositions} from '../../core/backup/artifact-locations.js'
import {unsafeEntryName, type TableSchema} from '../../core/backup/format.js'
import {openObjectStore} from '../object-store.js'
import {parseTableLine, tableFileOf} from './table-files.js'

export async function* objectStoreArtifacts(
  url: string,
  include: (path: string) => boolean = () => true,
  onSkip: (message: string) => void = () => undefined,
): AsyncIterable<{name: string; file: string}> {
  const location = parseArtifactUrl(url)
  const store = await openObjectStore(location)
  const prefix = location.prefix ? `${location.prefix}/` : ''
  const scratch = await mkdtemp(join(tmpdir(), 'mlflowctl-artifact-'))
  try {
    for (const object of (await store.list(prefix)).sort((a, b) => a.key.localeCompare(b.key))) {
      if (object.key.endsWith('/') || !include(object.key.slice(prefix.length))) continue // placeholders; unreferenced (never downloaded)
      const name = `artifacts/${object.key.slice(prefix.length)}`
      const unsafe = unsafeEntryName(name)
      if (unsafe) {
        // A key such as a//b or a/./b would land on the same file as a/b once restored to a directory.
        onSkip(`skipped ${object.key}: as an archive entry it ${unsafe}`)
        continue
      }
      const file = join(scratch, 'object')
      await store.downloadFile(object.key, file)
      yield {name, file}
      await rm(file, {force: true}) // the archive has read it by the time the next one is asked for
    }
  } finally {
    await rm(scratch, {recursive: true, force: true})
  }
}

/** A name as an operator can read it: printable ASCII as it is, every other byte as \\xNN. Pure. */
export function printableName(name: Buffer): string {
  return [...name]
    .map((byte) =>
      byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`,
    )
    .join('')
}

/**
 * Regular files under `dir`, sorted, as archive entries artifacts/<relative path>, named byte for byte (a backslash
 * is an ordinary character on Linux). Symlinks are skipped. A name that is not valid UTF-8 cannot be an archive
 * entry (nor served by MLflow's REST API): it is skipped, and `onSkip` hears of it with the name escaped.
 */
export async function* walkArtifacts(
  dir: string,
  onSkip: (message: string) => void = () => undefined,
  relative = '',
): AsyncIterable<{name: string; file: string}> {
  const entries = (await readdir(dir, {withFileTypes: true, encoding: 'buffer'})).sort((a, b) =>
    Buffer.compare(a.name, b.name),
  )
  for (const entry of entries) {
    const name = entry.name.toString('utf8')
    if (!Buffer.from(name, 'utf8').equals(entry.name)) {
      const shown = `artifacts/${relative}${printableName(entry.name)}${entry.isDirectory() ? '/' : ''}`
      onSkip(
        `skipped ${shown}: its name is not valid UTF-8, which an archive entry (and MLflow's REST API) cannot carry; rename it to keep it`,
      )
      continue
    }
    const full = join(dir, name)
    if (entry.isDirectory()) yield* walkArtifacts(full, onSkip, `${relative}${name}/`)
    else if (entry.isFile()) yield {name: `artifacts/${relative}${name}`, file: full}
  }
}

export async function* listArtifacts(
  source: string,
  include: (path: string) => boolean = () => true,
  onSkip: (message: string) => void = () => undefined,
): AsyncIterable<{name: string; file: string}> {
  if (/^(s3|wasbs|gs):\/\//.test(source)) {
    yield* objectStoreArtifacts(source, include, onSkip)
    return
  }
  for await (const entry of walkArtifacts(source, onSkip))
    if (include(entry.name.slice('artifacts/'.length))) yield entry
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
