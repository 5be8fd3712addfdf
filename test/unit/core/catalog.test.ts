// The committed migration catalog (generated from the released wheels) and the status logic over it.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {describe, it} from 'node:test'

import {
  chainTo,
  findRelease,
  newestRelease,
  pendingRevisions,
  releasesContaining,
  rollbackKind,
  schemaStatus,
  type CatalogOverlay,
  type MigrationCatalog,
} from '../../../src/core/catalog.js'

const catalog = JSON.parse(
  readFileSync(new URL('../../../catalog/mlflow-migrations.json', import.meta.url), 'utf8'),
) as MigrationCatalog
const overlay = JSON.parse(
  readFileSync(new URL('../../../catalog/overlay.json', import.meta.url), 'utf8'),
) as CatalogOverlay
const mlflowTables = ['alembic_version', 'experiments', 'runs', 'metrics']
const at = (revision: string | null) => ({tables: mlflowTables, revision, hasVersionTable: true})

describe('migration catalog', () => {
  it('covers every final release from 1.30.0, each chain linear from one root, heads consistent', () => {
    assert.equal(catalog.releases[0].version, '1.30.0')
    const roots = Object.entries(catalog.tracking)
      .filter(([, r]) => r.down === null)
      .map(([rev]) => rev)
    assert.deepEqual(roots, ['451aebb31d03'])
    for (const release of catalog.releases)
      assert.equal(chainTo(catalog.tracking, release.trackingHead).length, release.trackingRevisions, release.version)
    assert.ok(
      Object.keys(overlay.heavy).every((rev) => catalog.tracking[rev]),
      'every heavy revision in the overlay exists',
    )
  })

  it('every table a tracking revision creates is one a backup takes (KNOWN_MLFLOW_TABLES)', async () => {
    const {KNOWN_MLFLOW_TABLES} = await import('../../../src/core/backup/tables.js')
    const created = Object.values(catalog.tracking).flatMap((revision) => revision.creates ?? [])
    assert.ok(created.length > 60, `the generator found ${created.length} created tables`)
    assert.deepEqual(
      created.filter((table) => !KNOWN_MLFLOW_TABLES.has(table)),
      [],
    )
  })

  it('knows that version order is not schema order (bda7b8c39065: in 3.0.1 and 3.1.1, not 3.1.0)', () => {
    assert.ok(chainTo(catalog.tracking, findRelease(catalog, '3.0.1').trackingHead).includes('bda7b8c39065'))
    assert.ok(!chainTo(catalog.tracking, findRelease(catalog, '3.1.0').trackingHead).includes('bda7b8c39065'))
    assert.equal(releasesContaining(catalog, 'bda7b8c39065')[0], '3.0.1')
    assert.equal(catalog.tracking['5b0e9adcef9c'].firstRelease, '2.13.1')
  })
})

describe('additive migrations (instant rollback)', () => {
  const slice = (from: string, to: string) =>
    pendingRevisions(
      catalog,
      overlay,
      schemaStatus(catalog, overlay, at(findRelease(catalog, from).trackingHead), to).pending.map((p) => p.revision),
    )

  it('classifies every tracking revision, and a sample read by hand the same way', () => {
    const revisions = Object.values(catalog.tracking)
    assert.ok(revisions.every((revision) => typeof revision.additive === 'boolean'))
    // Read by hand in the wheels: a nullable column, a column with a server default, new tables, a new index…
    for (const revision of ['0c779009ac13', '6953534de441', '400f98739977', 'bd07f7e963c5', 'cbc13b556ace'])
      assert.equal(catalog.tracking[revision].additive, true, revision)
    // …and a widened column, a constraint rebuilt, rows rewritten, SQL run by op.execute.
    for (const [revision, operation] of [
      ['cc1f77228345', 'alter_column'],
      ['0584bdc529eb', 'drop_constraint'],
      ['90e64c465722', 'merge (data)'],
      ['1bd49d398cd23', 'execute'],
    ])
      assert.ok(catalog.tracking[revision].notAdditive?.includes(operation), `${revision}: ${operation}`)
  })

  it('2.22.5 → 3.1.0 rolls back instantly; 2.22.5 → 3.17.2 needs the restore, and says why', () => {
    const instant = rollbackKind(slice('2.22.5', '3.1.0'), '2.22.5')
    assert.equal(instant.kind, 'instant')
    assert.match(instant.explanation, /All 2 pending migrations only add/)
    const restore = rollbackKind(slice('2.22.5', '3.17.2'), '2.22.5')
    assert.equal(restore.kind, 'restore')
    assert.ok(restore.notAdditive.some((revision) => revision.revision === 'bda7b8c39065'))
    assert.match(restore.explanation, /restores the pre-upgrade backup/)
    assert.equal(rollbackKind([], '3.17.1').kind, 'instant')
  })
})

describe('schemaStatus', () => {
  const head = (version: string) => findRelease(catalog, version).trackingHead
  it('tells empty, pre-1.0, partial, foreign and auth revisions apart', () => {
    assert.equal(schemaStatus(catalog, overlay, {tables: [], revision: null, hasVersionTable: false}).kind, 'empty')
    assert.equal(
      schemaStatus(catalog, overlay, {tables: ['experiments', 'runs'], revision: null, hasVersionTable: false}).kind,
      'pre-1.0',
    )
    assert.equal(
      schemaStatus(catalog, overlay, {tables: mlflowTables, revision: null, hasVersionTable: true}).kind,
      'partial',
    )
    assert.equal(
      schemaStatus(catalog, overlay, {tables: ['alembic_version'], revision: head('3.0.0'), hasVersionTable: true})
        .kind,
      'partial',
    )
    const optuna = schemaStatus(catalog, overlay, at('v3.0.0.d'))
    assert.deepEqual([optuna.kind, optuna.known], ['foreign-alembic', false])
    const authRevision = Object.keys(catalog.auth).find((rev) => !catalog.tracking[rev])!
    assert.match(schemaStatus(catalog, overlay, at(authRevision)).explanation, /auth app/)
  })

  it('is current at the head, behind with the exact slice, and ahead of an older target (also when the version is newer)', () => {
    assert.equal(schemaStatus(catalog, overlay, at(head('3.17.2')), '3.17.2').kind, 'current')
    const behind = schemaStatus(catalog, overlay, at(head('2.22.5')), '3.17.2', {metrics: 12_000_000})
    const full = chainTo(catalog.tracking, head('3.17.2'))
    assert.equal(behind.kind, 'behind')
    assert.deepEqual(
      behind.pending.map((p) => p.revision),
      full.slice(full.indexOf(head('2.22.5')) + 1),
    )
    assert.deepEqual(behind.matchingReleases.includes('2.22.5'), true)
    const old = schemaStatus(catalog, overlay, at(head('1.30.0')), '3.17.2', {metrics: 12_000_000})
    const heavy = old.pending.find((p) => p.revision === 'a5b4c3d2e1f0') ?? old.pending.find((p) => p.heavy)!
    assert.ok(heavy.heavy)
    assert.equal(schemaStatus(catalog, overlay, at(head('3.18.0')), '3.17.2').kind, 'ahead')
    // A database that 3.0.1 upgraded is ahead of 3.1.0, though 3.1.0 is the later version.
    const fromPatch = schemaStatus(catalog, overlay, at('bda7b8c39065'), '3.1.0')
    assert.equal(fromPatch.kind, 'ahead')
    assert.match(fromPatch.explanation, /first shipped in 3\.0\.1/)
  })

  it('refuses a version that is not a final release in the catalog', () => {
    assert.throws(() => schemaStatus(catalog, overlay, at(null), '3.99.0'), /not in the migration catalog/)
    assert.equal(newestRelease(catalog).version, catalog.releases.at(-1)!.version)
  })
})
