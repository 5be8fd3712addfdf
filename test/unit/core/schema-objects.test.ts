// What a restore accepts in a backup's schema, from the committed catalog: MLflow's tables at the revision and its
// one trigger, nothing else; and the checks a restore runs around its own rewrite.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {loadCatalog} from '../../../src/adapters/catalog.js'
import {checkRowsAfterRewrite, foreignTablesOf, withoutTables} from '../../../src/core/backup/restore-schema.js'
import {
  describeObject,
  expectedSchema,
  foreignObjects,
  missingTables,
  type SchemaObject,
} from '../../../src/core/backup/schema-objects.js'
import type {BackupManifest} from '../../../src/core/backup/format.js'

const {catalog, overlay} = await loadCatalog()
const TRIGGER = overlay.sqliteTriggers!.prevent_secrets_aad_mutation
const table = (name: string, sql = `CREATE TABLE ${name} (x)`): SchemaObject => ({
  type: 'table',
  name,
  table: name,
  sql,
})

describe('expectedSchema', () => {
  it("knows the tables of a revision from the catalog's chain, and MLflow's trigger only from its revision on", () => {
    // 2.22's head has no secrets table yet; 3.17's has it, and the trigger on it
    const old = expectedSchema(catalog, overlay, '0584bdc529eb')!
    const current = expectedSchema(catalog, overlay, 'dc11669786a5')!
    assert.ok(old.tables.has('experiments') && old.tables.has('alembic_version') && old.tables.has('latest_metrics'))
    assert.ok(!old.tables.has('secrets') && !old.tables.has('logged_models') && old.triggers.size === 0)
    assert.ok(current.tables.has('secrets') && current.triggers.has('prevent_secrets_aad_mutation'))
  })

  it('is undefined for a revision the newest MLflow this mlflowctl restores with does not know', () => {
    assert.equal(expectedSchema(catalog, overlay, 'ffffffffffff'), undefined)
    // 3.18.0's head is in the catalog, but newer than the MLflow restores run with
    const newest = catalog.releases.at(-1)!
    if (newest.version !== '3.17.2') assert.equal(expectedSchema(catalog, overlay, newest.trackingHead), undefined)
  })
})

describe('foreignObjects', () => {
  const schema = expectedSchema(catalog, overlay, 'dc11669786a5')!
  it('names each object MLflow does not make, and passes what it does', () => {
    const objects: SchemaObject[] = [
      table('experiments'),
      table('metrics'),
      {type: 'index', name: 'index_metrics_run', table: 'metrics', sql: 'CREATE INDEX …'},
      {type: 'index', name: 'sqlite_autoindex_experiments_1', table: 'experiments', sql: null},
      table('sqlite_sequence'),
      {
        type: 'trigger',
        name: 'prevent_secrets_aad_mutation',
        table: 'secrets',
        sql: `${TRIGGER.sql.replace(/\n/g, '  \n ')};`,
      },
      {
        type: 'trigger',
        name: 'wipe',
        table: 'experiments',
        sql: 'CREATE TRIGGER wipe AFTER UPDATE ON experiments BEGIN DELETE FROM metrics; END',
      },
      {
        type: 'trigger',
        name: 'prevent_secrets_aad_mutation',
        table: 'secrets',
        sql: 'CREATE TRIGGER prevent_secrets_aad_mutation BEFORE UPDATE ON secrets BEGIN DELETE FROM runs; END',
      },
      {type: 'view', name: 'runs', table: 'runs', sql: 'CREATE VIEW runs AS SELECT 1'},
      table('customers'),
      table('search', 'CREATE VIRTUAL TABLE search USING fts5(x)'),
    ]
    assert.deepEqual(
      foreignObjects(objects, schema).map(({object, why}) => `${describeObject(object)}: ${why}`),
      [
        'trigger wipe on experiments: MLflow makes no such trigger',
        "trigger prevent_secrets_aad_mutation on secrets: not MLflow's own SQL for it",
        "view runs: a view where MLflow's table runs belongs; MLflow makes no views",
        "table customers: not one of MLflow's tables at revision dc11669786a5",
        'table search: a virtual table; MLflow makes none',
      ],
    )
  })

  it("names MLflow's tables a SQLite file lacks", () => {
    const all = [...schema.tables].map((name) => table(name))
    assert.deepEqual(missingTables(all, schema), [])
    assert.deepEqual(
      missingTables(
        all.filter((o) => o.name !== 'runs'),
        schema,
      ),
      ['runs'],
    )
  })
})

describe('a restore around its rewrite', () => {
  const manifest = {
    id: 'b',
    rowCounts: {experiments: 2, metrics: 10, customers: 1},
    files: [],
  } as unknown as BackupManifest
  it('refuses rows that changed while the locations were rewritten (what a trigger would do), nothing else', () => {
    assert.doesNotThrow(() => checkRowsAfterRewrite(manifest, {experiments: 2, metrics: 10, customers: 1}))
    assert.throws(() => checkRowsAfterRewrite(manifest, {experiments: 2, metrics: 0, customers: 1}), {
      code: 'BACKUP_CORRUPT',
      message: /changed its rows \(metrics holds 0 rows, the manifest says 10\)/,
    })
  })
  it("takes a PostgreSQL backup's other tables out of what it restores", () => {
    const schema = expectedSchema(catalog, overlay, 'dc11669786a5')!
    const foreign = foreignTablesOf(manifest, schema)
    assert.deepEqual(
      foreign.map((f) => f.object.name),
      ['customers'],
    )
    assert.deepEqual(Object.keys(withoutTables(manifest, foreign).rowCounts), ['experiments', 'metrics'])
  })
})
