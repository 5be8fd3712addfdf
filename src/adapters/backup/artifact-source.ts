// Where a backup's artifacts come from: a local directory, or an object-store prefix whose objects are
// downloaded one at a time into scratch space, archived, and deleted before the next one (disk stays flat).
import {createReadStream} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {locationPositions} from '../../core/backup/artifact-locations.js'
import {unsafeEntryName, type TableSchema} from '../../core/backup/format.js'
import {openStore} from '../store/index.js'
import {parseTableLine, tableFileOf} from './table-files.js'
import type {SnapshotEntry} from '../../core/backup/create.js'

/**
 * The files of an artifact store (a directory, s3://, wasbs://, gs://) as archive entries artifacts/<key>, those
 * `include` keeps. A directory's files are read where they are; an object store's are downloaded one at a time
 * into scratch space, archived, and deleted before the next one (disk stays flat). `onSkip` hears of what cannot
 * be archived: a name that is not valid UTF-8 (which MLflow's REST API cannot serve either), or an object key such
 * as a//b that would land on the same file as a/b once restored to a directory.
 */
export async function* listArtifacts(
  source: string,
  include: (path: string) => boolean = () => true,
  onSkip: (message: string) => void = () => undefined,
): AsyncIterable<{name: string; file: string}> {
  const store = await openStore(source)
  let scratch: string | undefined
  try {
    const skipped = (shown: string) =>
      onSkip(
        `skipped artifacts/${shown}: its name is not valid UTF-8, which an archive entry (and MLflow's REST API) cannot carry; rename it to keep it`,
      )
    for await (const {key} of store.entries('', skipped)) {
      if (!include(key)) continue // unreferenced: never downloaded
      const name = `artifacts/${key}`
      const local = store.localPath(key)
      if (local) {
        yield {name, file: local}
        continue
      }
      const unsafe = unsafeEntryName(name)
      if (unsafe) {
        onSkip(`skipped ${key}: as an archive entry it ${unsafe}`)
        continue
      }
      scratch ??= await mkdtemp(join(tmpdir(), 'mlflowctl-artifact-'))
      const file = join(scratch, 'object')
      await store.downloadFile(key, file)
      yield {name, file}
      await rm(file, {force: true}) // the archive has read it by the time the next one is asked for
    }
  } finally {
    if (scratch) await rm(scratch, {recursive: true, force: true})
  }
}

/**
 * The files of an artifact store as a snapshot takes them: name, size and version (mtime, ETag, generation) from the
 * listing alone, and the bytes only when asked for (a directory's in place, an object's downloaded), so that
 * unchanged files are never read.
 */
export async function* artifactEntries(
  source: string,
  include: (path: string) => boolean = () => true,
  onSkip: (message: string) => void = () => undefined,
): AsyncIterable<SnapshotEntry> {
  const store = await openStore(source)
  const skipped = (shown: string) =>
    onSkip(
      `skipped artifacts/${shown}: its name is not valid UTF-8, which a backup entry (and MLflow's REST API) cannot carry; rename it to keep it`,
    )
  for await (const {key, size, version} of store.entries('', skipped)) {
    if (!include(key)) continue
    const name = `artifacts/${key}`
    const unsafe = unsafeEntryName(name)
    if (unsafe) {
      onSkip(`skipped ${key}: as a backup entry it ${unsafe}`)
      continue
    }
    const local = store.localPath(key)
    yield local
      ? {name, size, version, file: local}
      : {name, size, version, download: (to: string) => store.downloadFile(key, to)}
  }
}

/** Every file under a local directory, as listArtifacts names them. */
export const walkArtifacts = (dir: string, onSkip?: (message: string) => void) => listArtifacts(dir, undefined, onSkip)

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
