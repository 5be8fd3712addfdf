// storage report and gc against a deployment on the fake Connect, which runs the real extension with real MLflow
// (local storage): the report from the ops endpoint, a dry run that changes nothing, the backup rule, a purge that
// backs up first and leaves every kept run as it was, the ledger and doctor's view of it.
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {before, describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {connectAuthEnv, deleteThrough, logRichRun, logRun, serverSnapshot} from '../support/mlflow-client.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const configDir = tempDir('gc-connect-config-')
const dataDir = tempDir('gc-connect-data-')
const env = {
  CONNECT_SERVER: fake.url,
  CONNECT_API_KEY: PUBLISHER_KEY,
  MLFLOWCTL_CONFIG_DIR: configDir,
  MLFLOWCTL_DATA_DIR: dataDir,
}
const cli = (args: string[]) => runCli([...args, '--json'], {env, timeoutMs: 300_000})
let deployment: {guid: string; contentUrl: string; dir: string} | undefined
const client = () => ({
  python: venv!.python,
  trackingUri: deployment!.contentUrl.replace(/\/$/, ''),
  token: '',
  env: connectAuthEnv(venv!.python, PUBLISHER_KEY),
})

describe('storage report and gc on a deployment (local storage)', () => {
  before(async () => {
    if (!venv) return
    const dir = join(tempDir(), 'gc')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv.mlflowVersion])).code, 0)
    const deployed = await runCli(
      ['deploy', dir, '--new', '--name', 'mlflow-gc', '--retention', 'deleted=30d,traces=90d', '--json'],
      {env},
    )
    assert.equal(deployed.code, 0, deployed.stdout)
    deployment = {guid: deployed.json!.result.guid, contentUrl: deployed.json!.result.contentUrl, dir}
  })

  it('reports, dry-runs, refuses a purge without a backup, then backs up and purges only what was deleted', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const {guid} = deployment!
    await logRichRun(client(), 'kept')
    const doomed = await logRun(client(), 'kept')
    const inGone = await logRun(client(), 'gone')
    await deleteThrough(client(), [doomed.runId], ['gone'])
    // What must survive: the active experiments, without the run deleted in one of them.
    const keptBefore = (await serverSnapshot(client())).experiments
      .filter((e: {stage: string}) => e.stage === 'active')
      .map((e: {runs: Array<{id: string}>}) => ({...e, runs: e.runs.filter((run) => run.id !== doomed.runId)}))

    const report = await cli(['storage', 'report', '--guid', guid])
    assert.equal(report.code, 0, report.stderr)
    const before = report.json!.result
    assert.equal(before.location, `connect:${guid}`)
    assert.equal(before.deleted.runs.count, 2, 'the deleted run and the run of the deleted experiment')
    assert.equal(before.deleted.experiments.count, 1)
    assert.ok(before.deleted.runs.bytes > 0)
    assert.equal(before.gc.retention.policy, 'deleted=30d,traces=90d', 'deploy --retention set it')
    assert.ok(before.estimated.includes('database.tables.rows'))

    // Deleted just now: the default --older-than 30d keeps them; a dry run changes nothing either way.
    const defaults = await cli(['gc', '--guid', guid])
    assert.equal(defaults.code, 0, defaults.stderr)
    assert.equal(defaults.json!.result.dryRun, true)
    assert.equal(defaults.json!.result.result.kinds.runs.count, 0)
    const dry = await cli(['gc', '--guid', guid, '--older-than', '0s'])
    assert.equal(dry.json!.result.result.kinds.runs.count, 2)
    assert.equal((await cli(['storage', 'report', '--guid', guid])).json!.result.deleted.runs.count, 2)

    const unsafe = await cli(['gc', '--guid', guid, '--older-than', '0s', '--yes'])
    assert.equal(unsafe.code, 2)
    assert.equal(unsafe.json!.error!.code, 'GC_NEEDS_BACKUP')

    const repo = tempDir('gc-connect-repo-')
    const purged = await cli(['gc', '--guid', guid, '--older-than', '0s', '--yes', '--repo', repo])
    assert.equal(purged.code, 0, `${purged.stdout}\n${purged.stderr}`)
    const outcome = purged.json!.result
    assert.equal(outcome.dryRun, false)
    assert.ok(outcome.backupId, 'a backup came first')
    // The backup before the purge is listed in the repository (a snapshot, the format of a new repository).
    const listed = await runCli(['backup', 'list', '--repo', repo, '--json'])
    assert.deepEqual(
      listed.json!.result.backups.map((b: {id: string; kind: string}) => [b.id, b.kind]),
      [[outcome.backupId, 'snapshot']],
    )
    assert.deepEqual(
      [outcome.result.deleted.runs.count, outcome.result.deleted.experiments.count],
      [2, 1],
      JSON.stringify(outcome.result),
    )
    assert.ok(outcome.result.bytesFreed > 0)

    const after = await cli(['storage', 'report', '--guid', guid])
    assert.equal(after.json!.result.deleted.runs.count, 0)
    assert.equal(after.json!.result.deleted.experiments.count, 0)
    assert.equal(after.json!.result.gc.last.ok, true)
    const keptAfter = (await serverSnapshot(client())).experiments
    assert.deepEqual(keptAfter, keptBefore, 'every run that was not deleted is exactly as it was')
    assert.ok(!JSON.stringify(keptAfter).includes(inGone.runId))

    const history = await cli(['history', '--guid', guid])
    assert.ok(JSON.stringify(history.json).includes('freed'), 'the ledger has the gc')
    const doctor = await runCli(['doctor', deployment!.dir, '--only', 'extension.gc', '--json'], {env})
    const check = doctor.json!.result.checks.find((c: {id: string}) => c.id === 'extension.gc')
    assert.equal(check.status, 'pass', JSON.stringify(check))
    assert.match(check.detail, /retention deleted=30d,traces=90d; last gc ok/)

    for (const output of [report, purged, after].flatMap((r) => [r.stdout, r.stderr]))
      assert.ok(!output.includes(PUBLISHER_KEY), 'the API key never appears')
    assert.ok(existsSync(join(dataDir, 'history.jsonl')))
  })
})
