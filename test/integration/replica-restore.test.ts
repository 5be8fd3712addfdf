// `backup restore --from-replica DIR [--at TIME]`: real MLflow writes a SQLite store while the extension's
// Replicator ships rounds; the CLI replays the replica into a new app-data directory (latest, and as of an earlier
// round) through the checked swap-in path; a damaged segment stops the restore with REPLICA_CORRUPT and the moment it
// can still reach; a backup and a replica together are refused.
import assert from 'node:assert/strict'
import {cpSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_VENVS, requireService, runWithExtension, testVenvs} from '../support/services.js'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))

/** Three rounds of 100 metrics each, shipped after each; prints the time after each ship (JSON list). */
const WRITE = `
import json, sys, time
from pathlib import Path
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflowctl_extension.replicator import Replicator
db, replica, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
SqlAlchemyStore(f"sqlite:///{db}", artifacts)  # MLflow creates its schema
replicator = Replicator(Path(db), Path(replica))
replicator.ship()
mlflow.set_tracking_uri(f"sqlite:///{db}")
experiment = mlflow.create_experiment("replicated", artifact_location=artifacts)
times = []
with mlflow.start_run(experiment_id=experiment) as run:
    for round_number in range(3):
        for step in range(100):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=round_number * 100 + step)
        time.sleep(0.05)
        replicator.ship()
        times.append(time.time())
        time.sleep(0.05)
replicator.close()
print(json.dumps({"run": run.info.run_id, "times": times}))
`

describe('restore from a replica', () => {
  it('replays the latest and an earlier round into app-data; a damaged segment is REPLICA_CORRUPT', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const work = tempDir('replica-restore-')
    const replica = join(work, 'replica')
    const written = JSON.parse(
      runWithExtension(venv!.python, WRITE, [join(work, 'mlflow.db'), replica, join(work, 'artifacts')]),
    ) as {run: string; times: number[]}
    const metricsIn = (dir: string) => {
      const db = new Database(join(dir, 'mlflow.db'), {readonly: true})
      try {
        return (db.prepare('SELECT count(*) AS n FROM metrics WHERE run_uuid = ?').get(written.run) as {n: number}).n
      } finally {
        db.close()
      }
    }

    const latest = await runCli([
      'backup',
      'restore',
      '--from-replica',
      replica,
      '--to',
      join(work, 'latest'),
      '--json',
    ])
    assert.equal(latest.code, 0, `${latest.stdout}\n${latest.stderr}`)
    assert.match(latest.json!.result.backupId, /^replica \d{8}T\d{6}Z-[0-9a-f]{6} at /)
    assert.equal(metricsIn(join(work, 'latest')), 300)

    const status = await runCli(['replica', 'status', '--replica', replica, '--json'])
    assert.equal(status.code, 0, status.stdout)
    assert.equal(status.json!.result.contents.generations.length, 1)
    assert.equal(status.json!.result.contents.generations[0].segments, 3, 'one segment per round with commits')
    const reachesTo = Date.parse(status.json!.result.contents.window.to) / 1000
    assert.ok(
      reachesTo > written.times[1] && reachesTo <= written.times[2] + 0.001,
      'the window ends at the last round',
    )

    const earlier = new Date(written.times[0] * 1000 + 20).toISOString()
    const first = await runCli([
      'backup',
      'restore',
      '--from-replica',
      replica,
      '--at',
      earlier,
      '--to',
      join(work, 'first'),
      '--json',
    ])
    assert.equal(first.code, 0, first.stdout)
    assert.equal(metricsIn(join(work, 'first')), 100, 'as of the first round: its 100 metrics, none after')

    const generation = readdirSync(join(replica, 'generations'))[0]
    const segmentsOf = (root: string) => {
      const wal = join(root, 'generations', generation, 'wal')
      return readdirSync(wal)
        .flatMap((index) =>
          readdirSync(join(wal, index))
            .filter((name) => name.endsWith('.frames.gz'))
            .map((name) => join(wal, index, name)),
        )
        .sort()
    }
    // The newest segment's sidecar lost: the restore reaches the round before it, and says which segment it left.
    const lostSidecar = join(work, 'lost-sidecar')
    cpSync(replica, lostSidecar, {recursive: true})
    rmSync(`${segmentsOf(lostSidecar).at(-1)!}.json`)
    const short = await runCli([
      'backup',
      'restore',
      '--from-replica',
      lostSidecar,
      '--to',
      join(work, 'short'),
      '--json',
    ])
    assert.equal(short.code, 0, short.stdout)
    assert.equal(metricsIn(join(work, 'short')), 200, 'the rounds before the segment without its sidecar')
    assert.match(
      short.json!.warnings!.join(),
      new RegExp(
        `${segmentsOf(lostSidecar).at(-1)!.split('/').pop()!.replaceAll('.', '\\.')} has no sidecar .*not replayed`,
      ),
    )

    // The window's start as replica status prints it is a moment --at takes; a millisecond before it names it.
    const from = status.json!.result.contents.window.from as string
    const atStart = await runCli([
      'backup',
      'restore',
      '--from-replica',
      replica,
      '--at',
      from,
      '--to',
      join(work, 'start'),
      '--json',
    ])
    assert.equal(atStart.code, 0, atStart.stdout)
    const tooEarly = new Date(Date.parse(from) - 1).toISOString()
    const before = await runCli([
      'backup',
      'restore',
      '--from-replica',
      replica,
      '--at',
      tooEarly,
      '--to',
      join(work, 'before'),
      '--json',
    ])
    assert.equal(before.json!.error!.code, 'REPLICA_EMPTY', before.stdout)
    assert.match(
      before.json!.error!.message,
      new RegExp(`the oldest moment it restores is ${from.replaceAll('.', '\\.')}`),
    )
    for (const [at, why] of [
      ['0', /not an ISO 8601 time/],
      [from.replace('Z', ''), /with a zone/],
      ['2999-01-01T00:00:00Z', /in the future/],
    ] as const) {
      const refused = await runCli([
        'backup',
        'restore',
        '--from-replica',
        replica,
        '--at',
        at,
        '--to',
        join(work, 'never'),
        '--json',
      ])
      assert.equal(refused.code, 2, refused.stdout)
      assert.equal(refused.json!.error!.code, 'INVALID_TIME')
      assert.match(refused.json!.error!.message, why)
    }

    // The middle segment's sidecar emptied, or its data gone while its sidecar stays: REPLICA_CORRUPT, and the --at it
    // suggests (the first round) restores.
    const suggestedAt = (result: Awaited<ReturnType<typeof runCli>>) =>
      /--at (\S+)$/.exec(result.json!.error!.suggestions!.join('\n'))![1]
    for (const [name, damage] of [
      ['empty-sidecar', (segment: string) => writeFileSync(`${segment}.json`, '')],
      ['segment-gone', (segment: string) => rmSync(segment)],
    ] as const) {
      const copy = join(work, name)
      cpSync(replica, copy, {recursive: true})
      damage(segmentsOf(copy)[1])
      const refused = await runCli([
        'backup',
        'restore',
        '--from-replica',
        copy,
        '--to',
        join(work, `${name}-latest`),
        '--json',
      ])
      assert.equal(refused.code, 6, `${name}: ${refused.stdout}`)
      assert.equal(refused.json!.error!.code, 'REPLICA_CORRUPT')
      assert.match(refused.json!.error!.message, /nothing was restored/i)
      const suggested = await runCli([
        'backup',
        'restore',
        '--from-replica',
        copy,
        '--at',
        suggestedAt(refused),
        '--to',
        join(work, `${name}-at`),
        '--json',
      ])
      assert.equal(suggested.code, 0, `${name}: ${suggested.stdout}`)
      assert.equal(metricsIn(join(work, `${name}-at`)), 100, `${name}: the first round, before the damaged segment`)
    }

    // A flipped byte in the last segment: nothing restored, and the moment the replica still reaches.
    const last = segmentsOf(replica).at(-1)!
    const bytes = readFileSync(last)
    bytes[Math.floor(bytes.length / 2)] ^= 0x20
    writeFileSync(last, bytes)
    const damaged = await runCli([
      'backup',
      'restore',
      '--from-replica',
      replica,
      '--to',
      join(work, 'damaged'),
      '--json',
    ])
    assert.equal(damaged.code, 6, damaged.stdout)
    assert.equal(damaged.json!.error!.code, 'REPLICA_CORRUPT')
    assert.match(damaged.json!.error!.message, /does not match its SHA-256.*Nothing was restored/)
    assert.match(damaged.json!.error!.suggestions!.join('\n'), /--at \d{4}-\d\d-\d\dT/)

    // Another database's generation copied in (two deployments once shared the URL): "latest" would restore it.
    const other = join(work, 'other')
    runWithExtension(venv!.python, WRITE, [join(other, 'mlflow.db'), join(other, 'replica'), join(other, 'artifacts')])
    const mixed = join(work, 'mixed')
    cpSync(replica, mixed, {recursive: true})
    const [stranger] = readdirSync(join(other, 'replica', 'generations'))
    cpSync(join(other, 'replica', 'generations', stranger), join(mixed, 'generations', '29991231T000000Z-ffffff'), {
      recursive: true,
    })
    const snapshotFile = join(mixed, 'generations', '29991231T000000Z-ffffff', 'snapshot.json')
    writeFileSync(snapshotFile, JSON.stringify({...JSON.parse(readFileSync(snapshotFile, 'utf8')), takenAt: 4e9}))
    const foreign = await runCli([
      'backup',
      'restore',
      '--from-replica',
      mixed,
      '--to',
      join(work, 'foreign'),
      '--json',
    ])
    assert.equal(foreign.code, 6, foreign.stdout)
    assert.equal(foreign.json!.error!.code, 'REPLICA_FOREIGN')
    assert.match(foreign.json!.error!.message, /belongs to another database/)

    const both = await runCli([
      'backup',
      'restore',
      'latest',
      '--from-replica',
      replica,
      '--to',
      join(work, 'x'),
      '--json',
    ])
    assert.equal(both.code, 2)
    assert.match(both.json!.error!.message, /not both/)
  })
})

/** Eight rounds of 10 metrics on a clock that moves a minute per round, merged after four: prints the round times. */
const COMPACTED = `
import json, sys
from pathlib import Path
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflowctl_extension.replicator import Replicator
db, replica, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
SqlAlchemyStore(f"sqlite:///{db}", artifacts)
clock = [1_700_000_000.0]  # in the past: --at refuses the future
replicator = Replicator(Path(db), Path(replica), now=lambda: clock[0], compact_segments=4)
replicator.ship()
mlflow.set_tracking_uri(f"sqlite:///{db}")
times = []
with mlflow.start_run() as run:
    for round_number in range(8):
        for step in range(10):
            mlflow.log_metric("loss", 1.0, step=round_number * 10 + step)
        clock[0] += 61
        replicator.ship()
        times.append(clock[0])
replicator.close()
print(json.dumps({"run": run.info.run_id, "times": times, "compacted": replicator.compacted}))
`

describe('restore from a compacted replica', () => {
  it('stops at any commit point inside a merged segment', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const work = tempDir('replica-compacted-')
    const replica = join(work, 'replica')
    const written = JSON.parse(
      runWithExtension(venv!.python, COMPACTED, [join(work, 'mlflow.db'), replica, join(work, 'artifacts')]),
    ) as {run: string; times: number[]; compacted: number}
    assert.ok(written.compacted >= 4, `merged ${written.compacted} segments`)
    for (const [round, time] of written.times.entries()) {
      const target = join(work, `at-${round}`)
      const result = await runCli([
        'backup',
        'restore',
        '--from-replica',
        replica,
        '--at',
        new Date(time * 1000).toISOString(),
        '--to',
        target,
        '--json',
      ])
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`)
      const db = new Database(join(target, 'mlflow.db'), {readonly: true})
      try {
        const metrics = db.prepare('SELECT count(*) FROM metrics WHERE run_uuid = ?').pluck().get(written.run)
        assert.equal(metrics, (round + 1) * 10, `as of round ${round}`)
      } finally {
        db.close()
      }
    }
  })
})
