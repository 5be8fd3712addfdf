// An upgrade killed at each of its recorded steps (MLFLOWCTL_FAULT_AT=upgrade:STEP makes the process SIGKILL itself
// there), 2.22 → 3.17.2 through the fake Connect with real MLflow, on local SQLite and on PostgreSQL. After each kill,
// `upgrade status` (and on local storage a new `upgrade apply` and `doctor`) say where it stopped, and the next
// command finishes it (`upgrade resume`) or undoes it (`upgrade abort`); that command is itself killed at the next
// step, so that one upgrade attempt passes through several steps, and a recovery that dies is recovered too. The end
// state is the old bundle on exactly the old data, or the new bundle on exactly the migrated data. One deployment
// per storage mode: two attempts undone (killed once activated; killed once the draft migrated, then through every
// step of the rollback), then one finished (killed at every other forward step, each time resumed).
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
  /** The steps a command was killed at so far. */
  killed: Set<string>
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

/** Runs an upgrade command until MLFLOWCTL_FAULT_AT stops it at `step`. */
async function killedAt(chain: Chain, command: string[], step: string): Promise<void> {
  chain.killed.add(step)
  const killed = await runCli([...command, '--json'], {
    env: {...env, MLFLOWCTL_FAULT_AT: `upgrade:${step}`},
    timeoutMs: 900_000,
  })
  assert.equal(
    killed.code,
    -1,
    `${chain.storage}: expected a kill at ${step}; ${command.slice(0, 2).join(' ')} ended: ${killed.stdout.slice(-800)}`,
  )
}

const abortArgs = (chain: Chain) => ['upgrade', 'abort', '--guid', chain.deployment.guid, '--yes', ...chain.extra]
const resumeArgs = (chain: Chain) => ['upgrade', 'resume', '--guid', chain.deployment.guid, '--yes', ...chain.extra]

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
  // The record and its reading do not depend on the storage: a new apply's refusal is checked on local storage.
  if (REFUSAL_CHECKED.has(step) && !chain.database) {
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
  const aborted = await cli(abortArgs(chain))
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
  const resumed = await cli(resumeArgs(chain))
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
/** Two attempts undone, then one finished; every step killed once, each row of the table reported. */
async function runChain(t: {diagnostic(message: string): void}, chain: Chain): Promise<void> {
  const apply = applyArgs(chain.deployment.guid, chain.extra)
  const report = async (step: string, did: string, end: string) => {
    const found = await expectReported(chain, step)
    t.diagnostic(row(chain, step, found, did, end))
    return found
  }

  // 1. Killed once the new bundle is active; a user writes to it; abort restores (held) and names the safety backup.
  await killedAt(chain, apply, 'activated')
  await report('activated', 'upgrade abort (after a write to the new bundle)', 'old bundle, old data')
  await logRun(clientOf(newest!.python, chain.deployment), 'written-after-the-kill')
  const undone = await abort(chain, 'activated')
  assert.ok(undone.safetyBackup, 'the safety backup that holds the write is named')
  assert.deepEqual(await serverSnapshot(clientOf(chain.deployment.python, chain.deployment)), chain.before)

  // 2. Killed once the draft migrated (a draft starts cold: its verification starts it, and it migrates); each abort
  // is killed at the next step of the rollback, and the last one finishes.
  await killedAt(chain, apply, 'draft-verified')
  let found = await report('draft-verified', 'upgrade abort, killed at restore-started', 'rolling back')
  assert.equal(found.state, 'previous-on-migrated-schema', 'the old bundle is in front of a migrated schema')
  if (!chain.database) {
    const doctor = await cli(['doctor', '--guid', chain.deployment.guid, '--only', 'upgrade.unfinished'])
    const check = doctor.json!.result.checks.find((c: {id: string}) => c.id === 'upgrade.unfinished')
    assert.equal(check.status, 'fail', doctor.stdout)
    assert.match(check.fix, /upgrade (resume|abort) --guid/)
  }
  assert.equal(found.resumable, true)
  const rollback = ['restore-started', 'restore-finished', 'previous-reactivated']
  for (const [index, step] of rollback.entries()) {
    await killedAt(chain, abortArgs(chain), step)
    const next = rollback[index + 1]
    found = await report(
      step,
      next ? `upgrade abort, killed at ${next}` : 'upgrade abort',
      next ? 'rolling back' : 'old bundle, old data',
    )
    assert.equal(found.resumable, false, `${step}: a rollback that began is only finished`)
  }
  const refused = await cli(resumeArgs(chain))
  assert.equal(refused.json!.error!.code, 'UPGRADE_NOT_RESUMABLE', refused.stdout)
  await abort(chain, 'previous-reactivated')

  // 3. Killed at every forward step, each time resumed; the last resume finishes on the migrated data.
  const forward = ['backup-taken', 'bundle-uploaded', 'draft-deployed', 'activated', 'verified']
  await killedAt(chain, apply, forward[0])
  for (const [index, step] of forward.entries()) {
    const next = forward[index + 1]
    found = await report(
      step,
      next ? `upgrade resume, killed at ${next}` : 'upgrade resume (after a write to the new bundle)',
      next ? 'upgrading' : 'new bundle, migrated data',
    )
    assert.equal(found.resumable, true, step)
    if (next) await killedAt(chain, resumeArgs(chain), next)
  }
  // With the new bundle active, a user writes before the last resume; the resume keeps it.
  const written = [await logRun(clientOf(newest!.python, chain.deployment), 'written-before-the-resume')]
  await resume(chain, 'verified', written)
  assert.deepEqual([...chain.killed].sort(), [...FAULT_STEPS].sort(), 'every step was killed once')
}

describe('upgrade apply killed at each step (fake Connect, real MLflow)', () => {
  it('local SQLite: killed at every step; two attempts undone by upgrade abort, one finished by upgrade resume', async (t) => {
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
      killed: new Set(),
      artifacts,
    }
    await runChain(t, chain)
  })

  it('PostgreSQL: killed at every step; two attempts undone by upgrade abort, one finished by upgrade resume', async (t) => {
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
      killed: new Set(),
      database: url,
      artifacts,
    }
    await runChain(t, chain)
  })
})
