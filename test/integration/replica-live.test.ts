// Restores from a live replica: while a writer logs metrics, writes artifacts and replicates with
// accelerated compaction, snapshots and retention (a merge every four segments, a generation every 3 s, generations
// past 3 s deleted after a 10 s grace), 40 restores in a row (latest and a moment a second ago, alternately) all
// succeed: each works from one listing, and nothing it listed is deleted while it reads.
import assert from 'node:assert/strict'
import {existsSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_VENVS, requireService, startWithExtension, testVenvs} from '../support/services.js'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))

/** Logs a metric and writes an artifact per round, ships every round, until the stop file appears; prints its counts. */
const LIVE = `
import json, sys, time
from pathlib import Path
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflowctl_extension.replicator import Replicator
db, replica, artifacts, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
SqlAlchemyStore(f"sqlite:///{db}", str(artifacts))
replicator = Replicator(db, replica, artifacts=artifacts, compact_segments=4, compact_age=0, snapshot_interval=3,
                        retention=3, delete_grace=10, artifact_interval=0)
replicator.ship()
mlflow.set_tracking_uri(f"sqlite:///{db}")
print("ready", flush=True)
step = 0
with mlflow.start_run() as run:
    while not stop.exists():
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        (artifacts / "live").mkdir(parents=True, exist_ok=True)
        (artifacts / "live" / f"{step:06}.txt").write_text(f"step {step}")
        replicator.shipper.notify(f"live/{step:06}.txt")  # as the extension does when MLflow's proxy answers an upload
        replicator.ship()
        replicator.maintain()
        step += 1
        time.sleep(0.05)
replicator.close()
print(json.dumps({"steps": step, "compacted": replicator.compacted}), flush=True)
`

describe('restores from a live replica', () => {
  it('succeed 40 times in 40 while compaction, snapshots and retention run', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const work = tempDir('replica-live-')
    const replica = join(work, 'replica')
    const stop = join(work, 'stop')
    const writer = await startWithExtension(venv!.python, LIVE, [
      join(work, 'mlflow.db'),
      replica,
      join(work, 'artifacts'),
      stop,
    ])
    // A second of history first, so that "a second ago" is a moment the replica holds.
    await sleep(1500)
    const restoredGenerations = new Set<string>()
    let latestMetrics = 0
    try {
      for (let attempt = 0; attempt < 40; attempt++) {
        const target = join(work, `restored-${attempt}`)
        const at = attempt % 2 === 1 ? ['--at', new Date(Date.now() - 1000).toISOString()] : []
        const restored = await runCli(['backup', 'restore', '--from-replica', replica, ...at, '--to', target, '--json'])
        assert.equal(restored.code, 0, `restore ${attempt + 1} of 40:\n${restored.stdout}\n${restored.stderr}`)
        restoredGenerations.add(/^replica (\S+) at /.exec(restored.json!.result.backupId)![1])
        const db = new Database(join(target, 'mlflow.db'), {readonly: true})
        const metrics = (db.prepare('SELECT count(*) AS n FROM metrics').get() as {n: number}).n
        db.close()
        const artifacts = existsSync(join(target, 'artifacts', 'live'))
          ? readdirSync(join(target, 'artifacts', 'live'))
          : []
        // Each artifact is written and notified with its round's metric; a restore may fall between the round's
        // WAL and its artifacts.
        assert.ok(
          artifacts.length >= metrics - 1,
          `restore ${attempt + 1}: ${artifacts.length} artifacts, ${metrics} metrics`,
        )
        if (at.length === 0) {
          assert.ok(
            metrics >= latestMetrics,
            `restore ${attempt + 1}: "latest" went back from ${latestMetrics} to ${metrics}`,
          )
          latestMetrics = metrics
        }
        rmSync(target, {recursive: true, force: true})
      }
    } finally {
      writeFileSync(stop, '')
      await new Promise((resolve) => writer.child.once('exit', resolve))
    }
    const counts = JSON.parse(writer.output().trim().split('\n').at(-1)!) as {steps: number; compacted: number}
    assert.ok(
      latestMetrics > 0 && counts.steps >= latestMetrics,
      `${latestMetrics} metrics restored of ${counts.steps}`,
    )
    // What made the restores hard happened while they ran: merges, and generations deleted by retention.
    assert.ok(counts.compacted > 0, 'segments were merged during the restores')
    const left = new Set(readdirSync(join(replica, 'generations')))
    assert.ok(
      [...restoredGenerations].some((generation) => !left.has(generation)),
      `retention deleted a generation a restore had used (restored from ${[...restoredGenerations].join(', ')})`,
    )
  })
})
