// Real dependencies of `backup verify --deep`: the restore's extraction and loader (real MLflow in the
// managed venv) into a scratch SQLite file, and SQLite's own checks on the result.
import {join} from 'node:path'

import Database from 'better-sqlite3'

import type {DeepVerifyDeps, RestoredDatabase} from '../../core/backup/deep-verify.js'
import {createRestoreDeps, type RestoreDepsOptions} from './restore.js'
import {deadRuns, openScratch, removeRuns} from '../fs/scratch.js'

export function inspectRestoredSqlite(file: string): RestoredDatabase {
  const db = new Database(file, {readonly: true, fileMustExist: true})
  try {
    const integrity = (db.prepare('PRAGMA integrity_check').all() as Array<{integrity_check: string}>)
      .map((row) => row.integrity_check)
      .filter((line) => line !== 'ok')
    const foreignKeyViolations = (
      db.prepare('PRAGMA foreign_key_check').all() as Array<{table: string; parent: string; rowid: number}>
    ).map((row) => `${row.table} row ${row.rowid} → ${row.parent}`)
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{
        name: string
      }>
    ).map((row) => row.name)
    const rowCounts = Object.fromEntries(
      tables.map((table) => [table, (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as {n: number}).n]),
    )
    const runs = tables.includes('runs')
      ? (db
          .prepare('SELECT run_uuid AS runId, artifact_uri AS artifactUri FROM runs')
          .all() as RestoredDatabase['runs'])
      : []
    const modelVersions = tables.includes('model_versions')
      ? (db
          .prepare('SELECT name, CAST(version AS TEXT) AS version, source FROM model_versions')
          .all() as RestoredDatabase['modelVersions'])
      : []
    return {integrity, foreignKeyViolations, rowCounts, runs, modelVersions}
  } finally {
    db.close()
  }
}

export function createDeepVerifyDeps(options: RestoreDepsOptions): DeepVerifyDeps {
  const restore = createRestoreDeps(options)
  const root = join(options.dataDir, 'verify')
  // A killed deep verify left plaintext tables here: gone before the next one starts.
  return {
    scratch: async () => (await removeRuns(await deadRuns(root)), openScratch(root)),
    extractVerified: restore.extractVerified,
    loadDatabase: restore.loadDatabase,
    inspect: inspectRestoredSqlite,
    join,
  }
}
