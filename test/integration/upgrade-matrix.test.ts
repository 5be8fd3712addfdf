// The upgrade matrix through the fake Connect with real MLflow: data written by a 3.0.x on SQLite and PostgreSQL,
// upgraded with `upgrade plan` + `upgrade apply` to the newest 3.x and read back by it; and a target the database is
// ahead of, refused. The older sources (2.16.x, 2.9.x, on both engines, with the Markdown plan of a 2.x source) and
// the instant rollback are in upgrade-matrix-older.test.ts; the last 2.x is upgraded on both engines (resumed after
// a kill, every row and file compared, and the client's view) in upgrade-kills.test.ts.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {OLD_3, fake, cli, newest, last2, deployRelease, writeData, upgradeAndCompare} from '../support/upgrade-bed.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService} from '../support/services.js'
import {tempDir} from '../support/cli.js'

describe('upgrade matrix (fake Connect, real MLflow)', () => {
  it(`local SQLite: ${OLD_3} → the newest 3.x keeps every row, byte and trace`, async (t) => {
    if (!requireService(t, Boolean(newest), NO_VENVS)) return
    const deployment = await deployRelease(OLD_3, 'upgrade-sqlite-30x')
    await upgradeAndCompare(t, deployment, await writeData(deployment))
  })

  it(`PostgreSQL: ${OLD_3} → the newest 3.x keeps every row and byte`, async (t) => {
    if (!requireService(t, Boolean(newest), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const url = await createPgDatabase(`mlflowctl_upgrade_pg_${OLD_3.replaceAll('.', '_')}`)
    const deployment = await deployRelease(OLD_3, `upgrade-pg-${OLD_3.replaceAll('.', '-')}`, {
      mode: 'custom',
      env: [`MLFLOW_BACKEND_STORE_URI=${url}`, `MLFLOW_ARTIFACTS_DESTINATION=${tempDir('upgrade-pg-artifacts-')}`],
    })
    await upgradeAndCompare(t, deployment, await writeData(deployment), ['--db', url])
  })

  it('refuses a target the database is ahead of, and changes nothing', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(newest!.mlflowVersion, 'upgrade-ahead')
    const plan = await cli(['upgrade', 'plan', '--guid', deployment.guid, '--to', last2!.mlflowVersion])
    assert.equal(plan.code, 0, plan.stdout)
    assert.equal(plan.json!.result.blocked, true)
    assert.ok(
      plan.json!.result.blockers.some((b: {code: string}) => b.code === 'DB_AHEAD_OF_TARGET'),
      JSON.stringify(plan.json!.result.blockers),
    )
    const applied = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', last2!.mlflowVersion, '--yes'])
    assert.equal(applied.code, 6)
    assert.equal(applied.json!.error!.code, 'UPGRADE_BLOCKED')
    assert.equal(fake.content.get(deployment.guid)!.bundles.length, 1, 'no bundle was uploaded')
    const same = await cli(['upgrade', 'apply', '--guid', deployment.guid, '--to', newest!.mlflowVersion, '--yes'])
    assert.equal(same.json!.result.outcome, 'nothing-to-do', same.stdout)
  })
})
