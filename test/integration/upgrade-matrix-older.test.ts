// The upgrade matrix from releases users still run (2.16.x and 2.9.x, current in 2024 and 2023), through the fake
// Connect with real MLflow, on local SQLite and on PostgreSQL: each source's data is written once by its own
// MLflow; a failed upgrade to the newest 3.x (the draft answers 403, as 3.5+ does for a host it does not allow)
// puts the old state back exactly, then the real one keeps every run, metric, param, tag, artifact, dataset input,
// registered model and alias. And an instant rollback: an upgrade whose migrations only add, rolled back without a
// restore and upgraded again, keeps what each phase logged.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  fake,
  cli,
  newest,
  last2,
  deployRelease,
  writeData,
  upgradeAndCompare,
  servedRevision,
  expectRolledBack,
  OLDER_SOURCES,
  clientOf,
  pythonFor,
  stripTraces,
  applyArgs,
  env,
} from '../support/upgrade-bed.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService} from '../support/services.js'
import {runCli, tempDir} from '../support/cli.js'
import {logRichRun, serverSnapshot} from '../support/mlflow-client.js'
import {findRelease} from '../../src/core/catalog.js'
import {loadCatalog} from '../../src/adapters/catalog.js'

/** The failed attempts (the draft answers 403, as 3.5+ does for a host it does not allow): each source and engine once. */
const ROLLED_BACK = new Set(['2.9.2 SQLite', '2.16.2 PostgreSQL'])
/** Releases whose migrations between only add (the catalog says so; the test proves it). */
const INSTANT_FROM = '2.22.5'
const INSTANT_TO = '3.1.0'
const headOf = async (version: string) => findRelease((await loadCatalog()).catalog, version).trackingHead

describe('upgrade matrix: older sources and the instant rollback (fake Connect, real MLflow)', () => {
  for (const version of OLDER_SOURCES) {
    for (const storage of ['SQLite', 'PostgreSQL'] as const) {
      it(`${storage}: ${version} → the newest 3.x keeps everything${ROLLED_BACK.has(`${version} ${storage}`) ? '; a failed attempt first puts the old state back exactly' : ''}`, async (t) => {
        if (!requireService(t, Boolean(newest), NO_VENVS)) return
        if (storage === 'PostgreSQL' && !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
        const name = `upgrade-${storage.toLowerCase()}-${version.replaceAll('.', '-')}`
        const url =
          storage === 'PostgreSQL' ? await createPgDatabase(`mlflowctl_${name.replaceAll('-', '_')}`) : undefined
        const deployment = await deployRelease(
          version,
          name,
          url
            ? {
                mode: 'custom',
                env: [`MLFLOW_BACKEND_STORE_URI=${url}`, `MLFLOW_ARTIFACTS_DESTINATION=${tempDir('upgrade-old-art-')}`],
              }
            : undefined,
        )
        const extra = url ? ['--db', url] : []
        const before = await writeData(deployment)
        if (url) {
          // External storage: the backup and a rollback need the database itself, and only the one it serves.
          const refused = await cli(applyArgs(deployment.guid))
          assert.equal(refused.json!.error!.code, 'DATABASE_URL_REQUIRED', refused.stdout)
          const other = await cli(applyArgs(deployment.guid, ['--db', `${url}_other`]))
          assert.equal(other.json!.error!.code, 'DATABASE_MISMATCH', other.stdout)
        }
        // A failed attempt that must put the old state back exactly: once per source, and once per engine.
        if (ROLLED_BACK.has(`${version} ${storage}`)) {
          const revision = await servedRevision(deployment.guid)
          const content = fake.content.get(deployment.guid)!
          content.env.set('MLFLOW_SERVER_ALLOWED_HOSTS', 'mlflow.example.invalid')
          const failed = await cli(applyArgs(deployment.guid, extra))
          content.env.delete('MLFLOW_SERVER_ALLOWED_HOSTS')
          await expectRolledBack(deployment, before, revision, failed)
          assert.match(failed.json!.error!.message, /experiments\/search answered 403|Verification of the draft failed/)
        }
        if (!url && version === OLDER_SOURCES[0]) {
          // What an operator reads before a 2.x → 3.x upgrade: the breaking changes on the way, and the app mode kept.
          const md = await runCli(
            ['upgrade', 'plan', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--format', 'md'],
            {env},
          )
          assert.match(md.stdout, new RegExp(`^# MLflow upgrade plan: ${version.replaceAll('.', '\\.')} → `, 'm'))
          assert.match(md.stdout, /## Breaking changes for operators[\s\S]*3\.3\.0: The server runs on uvicorn/)
          assert.match(md.stdout, /## Strategy: maintenance/)
          assert.match(md.stdout, /- app mode python-api: kept: the content was first deployed as python-api/)
        }
        // The OTLP route, the stale plan and the ledger do not depend on the source: upgrade-matrix checks them.
        await upgradeAndCompare(t, deployment, before, extra, false)
      })
    }
  }

  it(`local SQLite: ${INSTANT_FROM} → ${INSTANT_TO} rolls back instantly (additive migrations), keeping what each phase logged`, async (t) => {
    if (!requireService(t, Boolean(last2 && last2.mlflowVersion === INSTANT_FROM), NO_VENVS)) return
    const deployment = await deployRelease(INSTANT_FROM, 'upgrade-instant-rollback')
    const phase1 = await writeData(deployment)
    const plan = await cli(['upgrade', 'plan', '--guid', deployment.guid, '--to', INSTANT_TO])
    assert.equal(plan.json!.result.rollback.kind, 'instant', JSON.stringify(plan.json!.result.rollback))
    const upgraded = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', INSTANT_TO, '--yes'])
    assert.equal(upgraded.code, 0, upgraded.stdout)
    const head = upgraded.json!.result.revision
    const newer = {...deployment, python: await pythonFor(INSTANT_TO)}
    await logRichRun(clientOf(newer.python, deployment), 'logged-by-the-upgrade')
    // Back to the previous bundle without a restore: it serves the newer schema as it is.
    const rolledBack = await cli(['rollback', '--guid', deployment.guid, '--yes'])
    assert.equal(rolledBack.code, 0, rolledBack.stdout)
    assert.deepEqual(rolledBack.json!.result.instant, {head: await headOf(INSTANT_FROM), revision: head, migrations: 2})
    assert.equal(fake.content.get(deployment.guid)!.activeBundle, deployment.bundleId)
    assert.equal(await servedRevision(deployment.guid), head, 'the schema stayed where the upgrade left it')
    const doctor = await cli(['doctor', '--guid', deployment.guid, '--only', 'extension.schema'])
    const schema = doctor.json!.result.checks.find((c: {id: string}) => c.id === 'extension.schema')
    assert.equal(schema.status, 'warn', doctor.stdout)
    assert.match(schema.detail, /only add \(an instant rollback\)/)
    await logRichRun(clientOf(deployment.python, deployment), 'logged-after-the-rollback')
    const again = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', INSTANT_TO, '--yes'])
    assert.equal(again.code, 0, again.stdout)
    assert.equal(again.json!.result.revision, head)
    const after = stripTraces(await serverSnapshot(clientOf(newer.python, deployment)))
    const named = (snapshot: any, name: string) => snapshot.experiments.find((e: any) => e.name === name)
    for (const name of ['before-upgrade-a', 'before-upgrade-b'])
      assert.deepEqual(
        named(after, name),
        stripTraces(phase1).experiments.find((e: any) => e.name === name),
        name,
      )
    for (const name of ['logged-by-the-upgrade', 'logged-after-the-rollback']) {
      const experiment = named(after, name)
      assert.equal(experiment?.runs.length, 1, `${name}: ${JSON.stringify(after.experiments.map((e: any) => e.name))}`)
      assert.equal(experiment.runs[0].inputs.length, 1, `${name}: its dataset input`)
    }
    assert.deepEqual(
      after.models.map((m: any) => m.name),
      [
        'model-before-upgrade-a',
        'model-before-upgrade-b',
        'model-logged-after-the-rollback',
        'model-logged-by-the-upgrade',
      ],
    )
  })
})
