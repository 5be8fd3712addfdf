// Forges backups that are internally consistent but hostile: a real archive whose database (or table files) was
// changed, with the manifest and the listing sidecar rewritten to match, so that every checksum and row count
// checks out and only what the data itself holds can give it away.
import {createHash} from 'node:crypto'
import {copyFileSync, readFileSync, writeFileSync} from 'node:fs'
import {basename, join} from 'node:path'

import Database from 'better-sqlite3'

import {rewriteArchive} from './archives.js'
import {tempDir} from './cli.js'

interface Manifest {
  id: string
  alembicRevision: string | null
  rowCounts: Record<string, number>
  files: Array<{path: string; size: number; sha256: string}>
  [key: string]: unknown
}

export interface Forgery {
  /** Changes the archived SQLite file (format 2 of a SQLite source) with SQL. */
  sql?: string
  /** Adds entries (a table file, say). */
  entries?: Array<{name: string; data: Buffer}>
  /** Changes existing entries (db/schema.json, say). */
  edit?: Record<string, (data: Buffer) => Buffer>
  /** Last word on the manifest, after its sizes, SHA-256s and row counts were fixed. */
  manifest?: (manifest: Manifest) => Manifest
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

/** Reads one entry of an archive. */
async function entryOf(archive: string, wanted: string): Promise<Buffer> {
  let found: Buffer | undefined
  await rewriteArchive(archive, join(tempDir('forge-read-'), 'copy.tar.gz'), (name, data) => {
    if (name === wanted) found = data
    return null
  })
  if (!found) throw new Error(`${archive} has no ${wanted}`)
  return found
}

/**
 * Copies the backup `id` of `repo` into `into` (a new repository), forged: its database changed by `sql`, entries
 * added, the manifest fixed to match (sizes, SHA-256s, row counts of the changed database), and its sidecar too.
 */
export async function forgeBackup(repo: string, id: string, into: string, forgery: Forgery): Promise<string> {
  const archive = join(repo, `${id}.mlflowctl-backup.tar.gz`)
  let database: Buffer | undefined
  let rowCounts: Record<string, number> | undefined
  if (forgery.sql) {
    const file = join(tempDir('forge-db-'), 'mlflow.db')
    writeFileSync(file, await entryOf(archive, 'db/mlflow.db'))
    const db = new Database(file)
    db.exec(forgery.sql)
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
      .pluck()
      .all() as string[]
    rowCounts = Object.fromEntries(
      tables.map((t) => [
        t,
        db
          .prepare(`SELECT count(*) FROM "${t.replace(/"/g, '""')}"`)
          .pluck()
          .get() as number,
      ]),
    )
    db.close()
    database = readFileSync(file)
  }
  const added = forgery.entries ?? []
  const target = join(into, basename(archive))
  let written: Manifest | undefined
  const replaced = new Map<string, Buffer>([
    ...(database ? [['db/mlflow.db', database] as const] : []),
    ...added.map((entry) => [entry.name, entry.data] as const),
  ])
  await rewriteArchive(archive, target, (name, data) => {
    if (name === 'db/mlflow.db' && database) return [{name, data: database}]
    if (forgery.edit?.[name]) {
      const changed = forgery.edit[name](data)
      replaced.set(name, changed)
      return [{name, data: changed}]
    }
    if (name !== 'manifest.json') return null
    let manifest = JSON.parse(data.toString()) as Manifest
    manifest.files = [
      ...manifest.files.filter((file) => !replaced.has(file.path)),
      ...[...replaced].map(([path, bytes]) => ({path, size: bytes.length, sha256: sha256(bytes)})),
    ]
    if (rowCounts) manifest.rowCounts = rowCounts
    if (forgery.manifest) manifest = forgery.manifest(manifest)
    written = manifest
    return [...added, {name, data: Buffer.from(JSON.stringify(manifest, null, 2))}]
  })
  writeFileSync(join(into, `${id}.manifest.json`), JSON.stringify(written, null, 2))
  return target
}

/** A copy of an archive alone, without its sidecar, as someone would carry it elsewhere. */
export function archiveAlone(repo: string, id: string, into: string): string {
  const copy = join(into, `${id}.mlflowctl-backup.tar.gz`)
  copyFileSync(join(repo, `${id}.mlflowctl-backup.tar.gz`), copy)
  return copy
}
