// `upgrade apply` killed at each of its recorded steps (MLFLOWCTL_FAULT_AT=upgrade:STEP makes the process SIGKILL
// itself there), 2.22 → 3.17.2 through the fake Connect with real MLflow, on local SQLite and on PostgreSQL. After
// each kill, `upgrade status`, a new `upgrade apply` and `doctor` say where it stopped, and one command finishes it
// (`upgrade resume`) or undoes it (`upgrade abort`). The end state is the old bundle on exactly the old data, or the
// new bundle on exactly the migrated data. One deployment per storage mode goes through the steps in turn: every
// abort must leave it as it was, so the next kill starts from the same state.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readdirSync, readFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'
import pg from 'pg'

import {FAULT_STEPS} from '../../src/core/upgrade-intent.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService} from '../support/services.js'
import {
  fake,
  env,
  cli,
  newest,
  last2,
  deployRelease,
  writeData,
  servedRevision,
  clientOf,
  stripTraces,
  type Deployment,
  applyArgs,
  sqliteOf,
  workDir,
} from '../support/upgrade-bed.js'
import {runCli, tempDir} from '../support/cli.js'
import {logRun, serverSnapshot} from '../support/mlflow-client.js'

/** Steps reached only by a rollback: the upgrade must fail first (the draft answers 403, as 3.5+ does for a host
 * it does not allow). */
const ROLLBACK = new Set(['restore-started', 'restore-finished', 'previous-reactivated'])
const FAIL_HOSTS = 'MLFLOW_SERVER_ALLOWED_HOSTS'
/** A new apply is refused the same way whatever the step: checked once for each state a kill can leave. */
const REFUSAL_CHECKED = new Set(['backup-taken', 'draft-deployed', 'activated', 'restore-started', 'verified'])

interface Chain {
  deployment: Deployment
  /** What the old MLflow's client sees, and every row and artifact byte, before the first kill. */
  before: unknown
  fingerprint: Fingerprint
  revision: string
  extra: string[]
  storage: string
  /** The external database, and the artifact directory; local storage keeps both in the data dir. */
  database?: string
  artifacts: string
}

interface Fingerprint {
  /** Every row of every table, sorted (so that only the data counts), hashed. */
  rows: string
  /** Each artifact file's SHA-256 by its path. */
  files: Record<string, string>
}

/** The data as it is stored, read straight from the store, so that each step's check costs no MLflow client. */
async function dataFingerprint(chain: Pick<Chain, 'deployment' | 'database' | 'artifacts'>): Promise<Fingerprint> {
  const hash = createHash('sha256')
  const addTable = (name: string, rows: unknown[]) =>
    hash.update(
      `${name}\n${rows
        .map((row) => JSON.stringify(row))
        .sort()
        .join('\n')}\n`,
    )
  if (chain.database) {
    const client = new pg.Client({connectionString: chain.database})
    await client.connect()
    try {
      const tables = await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
      for (const {tablename} of tables.rows)
        addTable(tablename, (await client.query(`SELECT * FROM "${tablename}"`)).rows)
    } finally {
      await client.end()
    }
  } else {
    const db = new Database(sqliteOf(chain.deployment.guid), {readonly: true, fileMustExist: true})
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{
        name: string
      }>
      for (const {name} of tables) addTable(name, db.prepare(`SELECT * FROM "${name}"`).all())
    } finally {
      db.close()
    }
  }
  const files = readdirSync(chain.artifacts, {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
  return {
    rows: hash.digest('hex'),
    files: Object.fromEntries(
      files.map((file) => [
        relative(chain.artifacts, file),
        createHash('sha256').update(readFileSync(file)).digest('hex'),
      ]),
    ),
  }
}

async function killAt(chain: Chain, step: string): Promise<void> {
  const {deployment, extra} = chain
  if (ROLLBACK.has(step)) fake.content.get(deployment.guid)!.env.set(FAIL_HOSTS, 'mlflow.example.invalid')
  const killed = await runCli([...applyArgs(deployment.guid, extra), '--json'], {
    env: {...env, MLFLOWCTL_FAULT_AT: `upgrade:${step}`},
    timeoutMs: 900_000,
  })
  fake.content.get(deployment.guid)!.env.delete(FAIL_HOSTS)
  assert.equal(killed.code, -1, `${chain.storage} ${step}: expected a kill; it ended: ${killed.stdout.slice(-800)}`)
}

/** What the next commands say after a kill: status and a new apply name the step; doctor fails its check. */
interface Reported {
  state: string
  resumable: boolean
  activeBundleId: string | null
  revision?: string
}

async function expectReported(chain: Chain, step: string): Promise<Reported> {
  const {deployment, extra} = chain
  const status = await cli(['upgrade', 'status', '--guid', deployment.guid])
  assert.equal(status.code, 6, status.stdout)
  assert.equal(status.json!.error!.code, 'UPGRADE_IN_PROGRESS')
  const interrupted = status.json!.result.interrupted
  assert.equal(interrupted.step, step)
  assert.match(status.json!.error!.suggestions[0], /^mlflowctl upgrade (resume|abort) --guid /)
  if (REFUSAL_CHECKED.has(step)) {
    const again = await cli(applyArgs(deployment.guid, extra))
    assert.equal(again.code, 6, again.stdout)
    assert.equal(again.json!.error!.code, 'UPGRADE_IN_PROGRESS')
    assert.match(again.json!.error!.message, new RegExp(`stopped after its step "${step}"`))
  }
  return interrupted
}

/** One row of the kill-step table: the step, what status found, what the next command did, where it ended. */
const row = (chain: Chain, step: string, found: Reported, did: string, end: string) =>
  `${chain.storage} | ${step} | ${found.state} (active bundle ${found.activeBundleId}, schema ${found.revision ?? 'not reported'}) | ${did} | ${end}`

async function expectOld(chain: Chain, label: string): Promise<void> {
  const {deployment} = chain
  assert.equal(fake.content.get(deployment.guid)!.activeBundle, deployment.bundleId, `${label}: the old bundle serves`)
  assert.equal(await servedRevision(deployment.guid), chain.revision, `${label}: at the old head`)
  const now = await dataFingerprint(chain)
  assert.equal(now.rows, chain.fingerprint.rows, `${label}: every row as before`)
  if (chain.database) {
    // An external database is restored alone (migrations never touch artifacts): a file written after the kill
    // stays in the artifact store, beside every file that was there, unchanged.
    for (const [path, sha] of Object.entries(chain.fingerprint.files))
      assert.equal(now.files[path], sha, `${label}: artifact ${path}`)
  } else assert.deepEqual(now.files, chain.fingerprint.files, `${label}: every artifact as before`)
  const status = await cli(['upgrade', 'status', '--guid', deployment.guid])
  assert.equal(status.code, 0, `${label}: nothing unfinished: ${status.stdout}`)
}

async function abort(chain: Chain, step: string): Promise<Record<string, any>> {
  const aborted = await cli(['upgrade', 'abort', '--guid', chain.deployment.guid, '--yes', ...chain.extra])
  assert.equal(
    aborted.code,
    0,
    `${chain.storage} abort after ${step}: ${aborted.stdout}\n${aborted.stderr.slice(-1500)}`,
  )
  assert.equal(aborted.json!.result.outcome, 'rolled-back')
  assert.equal(aborted.json!.result.stoppedAfter, step)
  await expectOld(chain, `${chain.storage} ${step} → abort`)
  return aborted.json!.result
}

async function resume(chain: Chain, step: string, writtenAfterKill: unknown[]): Promise<void> {
  const {deployment} = chain
  const resumed = await cli(['upgrade', 'resume', '--guid', deployment.guid, '--yes', ...chain.extra])
  assert.equal(
    resumed.code,
    0,
    `${chain.storage} resume after ${step}: ${resumed.stdout}\n${resumed.stderr.slice(-1500)}`,
  )
  assert.equal(resumed.json!.result.outcome, 'upgraded')
  const active = fake.content.get(deployment.guid)!.activeBundle
  assert.notEqual(active, deployment.bundleId, 'the new bundle serves')
  assert.equal(resumed.json!.result.activeBundleId, active)
  const after = stripTraces(await serverSnapshot(clientOf(newest!.python, deployment)))
  const names = (snapshot: any) => snapshot.experiments.map((e: any) => e.name).sort()
  // The migrated data: the old experiments as they were, plus what was written after the kill.
  assert.deepEqual(
    after.experiments.filter((e: any) => (chain.before as any).experiments.some((b: any) => b.name === e.name)),
    stripTraces(chain.before).experiments,
  )
  assert.equal(names(after).length, names(chain.before).length + writtenAfterKill.length, names(after).join())
  const history = await cli(['history', '--guid', deployment.guid])
  assert.ok(
    history.json!.result.events.some(
      (e: {action: string; result: string; message?: string}) =>
        e.action === 'upgrade' && e.result === 'ok' && e.message?.includes(`resumed after "${step}"`),
    ),
    'the ledger records the resumed upgrade',
  )
}

/** Every kill step, each undone, and the last one finished, on one deployment. */
async function runChain(
  t: {diagnostic(message: string): void},
  chain: Chain,
  finish: {resumeAt: string; abortsFirst: string[]},
): Promise<void> {
  for (const step of finish.abortsFirst) {
    await killAt(chain, step)
    const reported = await expectReported(chain, step)
    if (step === 'bundle-uploaded') {
      const doctor = await cli(['doctor', '--guid', chain.deployment.guid, '--only', 'upgrade.unfinished'])
      const check = doctor.json!.result.checks.find((c: {id: string}) => c.id === 'upgrade.unfinished')
      assert.equal(check.status, 'fail', doctor.stdout)
      assert.match(check.fix, /upgrade (resume|abort) --guid/)
    }
    if (ROLLBACK.has(step)) {
      assert.equal(reported.resumable, false, `${step}: a rollback that began is only finished`)
      const refused = await cli(['upgrade', 'resume', '--guid', chain.deployment.guid, '--yes', ...chain.extra])
      assert.equal(refused.json!.error!.code, 'UPGRADE_NOT_RESUMABLE', refused.stdout)
    }
    const written: unknown[] = []
    if (step === 'activated') {
      // A user writes to the new bundle between the kill and the abort: the restore keeps it in a safety backup.
      written.push(await logRun(clientOf(newest!.python, chain.deployment), 'written-after-the-kill'))
    }
    const result = await abort(chain, step)
    if (written.length > 0) {
      assert.ok(result.safetyBackup, `${step}: the safety backup is named`)
      // The old MLflow's client sees exactly what it saw before (the held restore went through the new bundle).
      assert.deepEqual(await serverSnapshot(clientOf(chain.deployment.python, chain.deployment)), chain.before)
    }
    t.diagnostic(row(chain, step, reported, `upgrade abort: ${result.message}`, 'old bundle, old data (compared)'))
  }
  await killAt(chain, finish.resumeAt)
  const reported = await expectReported(chain, finish.resumeAt)
  assert.equal(reported.resumable, true)
  // With the new bundle active, a user writes before the resume; the resume keeps it.
  const written =
    finish.resumeAt === 'verified'
      ? [await logRun(clientOf(newest!.python, chain.deployment), 'written-before-the-resume')]
      : []
  await resume(chain, finish.resumeAt, written)
  t.diagnostic(row(chain, finish.resumeAt, reported, 'upgrade resume', 'new bundle, migrated data (compared)'))
}

describe('upgrade apply killed at each step (fake Connect, real MLflow)', () => {
  it('local SQLite: every step, each undone by upgrade abort; a kill after verification finished by upgrade resume', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS)) return
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-kills-sqlite')
    const artifacts = join(workDir, 'data', deployment.guid, 'artifacts')
    const before = await writeData(deployment)
    const chain: Chain = {
      deployment,
      before,
      fingerprint: await dataFingerprint({deployment, artifacts}),
      revision: await servedRevision(deployment.guid),
      extra: [],
      storage: 'local',
      artifacts,
    }
    await runChain(t, chain, {resumeAt: 'verified', abortsFirst: FAULT_STEPS.filter((step) => step !== 'verified')})
  })

  it('PostgreSQL: every step, each undone by upgrade abort; a kill after the draft verified finished by upgrade resume', async (t) => {
    if (!requireService(t, Boolean(newest && last2), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG))
      return
    const url = await createPgDatabase('mlflowctl_upgrade_kills')
    const artifacts = tempDir('upgrade-kills-artifacts-')
    const deployment = await deployRelease(last2!.mlflowVersion, 'upgrade-kills-pg', {
      mode: 'custom',
      env: [`MLFLOW_BACKEND_STORE_URI=${url}`, `MLFLOW_ARTIFACTS_DESTINATION=${artifacts}`],
    })
    const before = await writeData(deployment)
    const chain: Chain = {
      deployment,
      before,
      fingerprint: await dataFingerprint({deployment, database: url, artifacts}),
      revision: await servedRevision(deployment.guid),
      extra: ['--db', url],
      storage: 'PostgreSQL',
      database: url,
      artifacts,
    }
    await runChain(t, chain, {
      resumeAt: 'draft-verified',
      abortsFirst: FAULT_STEPS.filter((step) => step !== 'draft-verified'),
    })
  })
})
