// Format 1 archives keep verifying and restoring: test/data/format1 holds one made by mlflowctl 0.1.0
// (before format 2) from a real MLflow 3.17 store: a run with 22 metric points (NaN and Infinity among them), a
// param, tags, a registered model version and one artifact.
// test-pool: background (no deadline here that a slow, busy machine could miss)
import assert from 'node:assert/strict'
import {cpSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

import Database from 'better-sqlite3'

import {runCli, tempDir} from '../support/cli.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

const DATA = fileURLToPath(new URL('../data/format1', import.meta.url))
const ID = '20261204T083251Z-8b6ef0'
const RUN = '61329851c85b4883a21afc5405618bf5'
const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))

describe('a format 1 archive of the current release', () => {
  it('verifies, and restores into an app-data directory with every row, value and artifact', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = tempDir('format1-repo-')
    cpSync(DATA, repo, {recursive: true})
    const manifest = JSON.parse(readFileSync(join(repo, `${ID}.manifest.json`), 'utf8'))
    assert.equal(manifest.format, 1)
    const verified = await runCli(['backup', 'verify', ID, '--repo', repo, '--json'])
    assert.equal(verified.code, 0, verified.stdout)
    const target = join(tempDir('format1-target-'), 'data')
    const restored = await runCli(['backup', 'restore', ID, '--repo', repo, '--to', target, '--json'])
    assert.equal(restored.code, 0, restored.stdout + restored.stderr)
    const db = new Database(join(target, 'mlflow.db'), {readonly: true})
    try {
      for (const [table, count] of Object.entries(manifest.rowCounts as Record<string, number>))
        assert.equal((db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as {n: number}).n, count, table)
      const special = db
        .prepare("SELECT key, value, is_nan FROM metrics WHERE run_uuid = ? AND key IN ('nan', 'inf') ORDER BY key")
        .all(RUN) as Array<{key: string; value: number; is_nan: number}>
      assert.deepEqual(
        special.map((row) => [row.key, row.is_nan === 1 || Number.isNaN(row.value) ? 'NaN' : row.value]),
        [
          ['inf', Number.MAX_VALUE], // MLflow itself stores +Infinity as the largest double
          ['nan', 'NaN'],
        ],
      )
      const source = db.prepare("SELECT source FROM model_versions WHERE name = 'format1-model'").get() as {
        source: string
      }
      assert.equal(source.source, `mlflow-artifacts:/1/${RUN}/artifacts/model`)
    } finally {
      db.close()
    }
    assert.equal(
      readFileSync(join(target, 'artifacts', '1', RUN, 'artifacts', 'model', 'weights.txt'), 'utf8'),
      'weights-v1\n',
    )
  })
})
