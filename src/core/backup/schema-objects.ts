/**
 * What MLflow's own migrations create at a schema revision, and what in a backup is not that. A SQLite file is
 * restored as it is, so anything in it runs in the restored store: a trigger fires on the restore's own location
 * rewrite and on every later write, a view can stand where an MLflow table belongs. A restore accepts exactly
 * MLflow's tables (its initial ones and every table its migrations created up to the revision) and MLflow's one
 * trigger; indexes on those tables are accepted (an index runs no code). Pure.
 */
import type {CatalogOverlay, MigrationCatalog} from '../catalog.js'
import {chainTo, newestSupportedRelease} from '../catalog.js'

/** A row of sqlite_master, or a table of a backup's table files (`type: 'table'`, no SQL). */
export interface SchemaObject {
  type: 'table' | 'index' | 'trigger' | 'view'
  name: string
  /** The table an index or trigger belongs to (a table's own name for a table). */
  table: string
  sql: string | null
}

export interface ExpectedSchema {
  revision: string
  tables: Set<string>
  /** Trigger name → its table and its SQL as MLflow writes it. */
  triggers: Map<string, {table: string; sql: string}>
}

/** A backup's object that MLflow does not make at the backup's revision, and why. */
export interface ForeignObject {
  object: SchemaObject
  why: string
}

/** The tables MLflow creates before its first migration (mlflow/store/tracking/dbmodels/initial_models.py). */
const INITIAL_TABLES = ['experiments', 'runs', 'tags', 'metrics', 'params', 'alembic_version']

/**
 * What MLflow makes at `revision`, or undefined when `revision` is not on the chain of the newest MLflow this
 * mlflowctl restores with (a newer MLflow's backup, or not MLflow's at all). Pure.
 */
export function expectedSchema(
  catalog: MigrationCatalog,
  overlay: Pick<CatalogOverlay, 'sqliteTriggers'>,
  revision: string,
): ExpectedSchema | undefined {
  const known = chainTo(catalog.tracking, newestSupportedRelease(catalog).trackingHead)
  const upTo = known.indexOf(revision)
  if (upTo === -1) return undefined
  const applied = new Set(known.slice(0, upTo + 1))
  const tables = new Set([...INITIAL_TABLES, ...[...applied].flatMap((rev) => catalog.tracking[rev].creates ?? [])])
  const triggers = new Map(
    Object.entries(overlay.sqliteTriggers ?? {})
      .filter(([, trigger]) => applied.has(trigger.since))
      .map(([name, trigger]) => [name, {table: trigger.table, sql: trigger.sql}]),
  )
  return {revision, tables, triggers}
}

/** SQL compared as SQLite keeps it, whatever its layout: whitespace collapsed, the final semicolon dropped. */
const normalized = (sql: string | null) =>
  (sql ?? '')
    .replace(/\s+/g, ' ')
    .replace(/\s*;\s*$/, '')
    .trim()
    .toLowerCase()

/** "trigger x on experiments", "view runs", "table customers". Pure. */
export const describeObject = (object: SchemaObject) =>
  object.type === 'trigger' || object.type === 'index'
    ? `${object.type} ${object.name} on ${object.table}`
    : `${object.type} ${object.name}`

/**
 * The objects that are not MLflow's at the expected revision: views, virtual tables, tables MLflow does not make
 * there, triggers other than MLflow's own (by name, table and SQL). SQLite's own objects (sqlite_*) and indexes on
 * MLflow's tables pass. Pure.
 */
export function foreignObjects(objects: SchemaObject[], expected: ExpectedSchema): ForeignObject[] {
  const found: ForeignObject[] = []
  for (const object of objects) {
    if (object.name.startsWith('sqlite_')) continue
    if (object.type === 'view') {
      const where = expected.tables.has(object.name) ? ` where MLflow's table ${object.name} belongs` : ''
      found.push({object, why: `a view${where}; MLflow makes no views`})
    } else if (object.type === 'trigger') {
      const mlflows = expected.triggers.get(object.name)
      if (!mlflows || mlflows.table !== object.table || normalized(mlflows.sql) !== normalized(object.sql))
        found.push({object, why: mlflows ? "not MLflow's own SQL for it" : 'MLflow makes no such trigger'})
    } else if (object.type === 'table') {
      if (/^\s*create\s+virtual\s+table/i.test(object.sql ?? ''))
        found.push({object, why: 'a virtual table; MLflow makes none'})
      else if (!expected.tables.has(object.name))
        found.push({object, why: `not one of MLflow's tables at revision ${expected.revision}`})
    }
  }
  return found
}

/** MLflow's tables at the revision that a SQLite file lacks (a restore cannot add them to a file used as it is). Pure. */
export function missingTables(objects: SchemaObject[], expected: ExpectedSchema): string[] {
  const present = new Set(objects.filter((o) => o.type === 'table').map((o) => o.name))
  return [...expected.tables].filter((table) => !present.has(table)).sort()
}
