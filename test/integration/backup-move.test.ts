// Restores that move a store: a server without the artifact proxy keeps absolute artifact locations in
// its rows. Restored beside its artifacts in a new place, with the old place gone, real MLflow must still find
// every artifact: the rows are rewritten to the new root (and kept as they were with --keep-artifact-locations).
// test-pool: background (no deadline here that a slow, busy machine could miss)
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, renameSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {before, describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const work = tempDir('backup-move-')
const oldRoot = join(work, 'old', 'artifacts')
let runId = ''

/** Runs MLflow's own client against a SQLite store (no server, no proxy: locations are absolute paths). */
function mlflow(db: string, script: string, ...args: string[]): string {
  return execFileSync(venv!.python, ['-c', script, db, ...args], {
    encoding: 'utf8',
    env: {...process.env, MLFLOW_ENABLE_ASYNC_LOGGING: 'false'},
  })
    .trim()
    .split('\n')
    .at(-1)!
}

const LOG = `
import sys, mlflow
mlflow.set_tracking_uri(f"sqlite:///{sys.argv[1]}")
experiment = mlflow.create_experiment("moved", artifact_location=sys.argv[2])
with mlflow.start_run(experiment_id=experiment) as run:
    mlflow.log_text("hello from the old store", "notes/hello.txt")
client = mlflow.MlflowClient()
client.create_registered_model("moved-model")
client.create_model_version("moved-model", f"{run.info.artifact_uri}/notes", run.info.run_id)
print(run.info.run_id)
`

const READ = `
import sys, json, mlflow
mlflow.set_tracking_uri(f"sqlite:///{sys.argv[1]}")
client = mlflow.MlflowClient()
run = client.get_run(sys.argv[2])
text = open(mlflow.artifacts.download_artifacts(run_id=sys.argv[2], artifact_path="notes/hello.txt")).read()
experiment = client.get_experiment(run.info.experiment_id)
version = client.get_model_version("moved-model", "1")
print(json.dumps({"text": text, "runUri": run.info.artifact_uri, "experiment": experiment.artifact_location, "source": version.source}))
`

describe('restore that moves the store', () => {
  before(() => {
    if (!venv) return
    mkdirSync(join(work, 'old'), {recursive: true})
    runId = mlflow(join(work, 'old', 'mlflow.db'), LOG, oldRoot)
  })

  it('rewrites absolute artifact locations to the new root, so real MLflow reads the artifacts there', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = join(work, 'repo')
    const created = await runCli([
      'backup',
      'create',
      '--source',
      `sqlite:///${join(work, 'old', 'mlflow.db')}`,
      '--artifacts-source',
      oldRoot,
      '--repo',
      repo,
      '--json',
    ])
    assert.equal(created.code, 0, created.stdout + created.stderr)
    renameSync(join(work, 'old'), join(work, 'gone')) // the disaster: nothing is at the old place any more
    const newDb = join(work, 'new', 'db', 'mlflow.db')
    const newRoot = join(work, 'new', 'store')
    const restored = await runCli([
      'backup',
      'restore',
      'latest',
      '--repo',
      repo,
      '--to',
      `sqlite:///${newDb}`,
      '--artifacts-to',
      newRoot,
      '--json',
    ])
    assert.equal(restored.code, 0, restored.stdout + restored.stderr)
    const moved = restored.json!.result.artifactLocations
    assert.equal(moved.to, newRoot)
    assert.equal(moved.rewritten['experiments.artifact_location'], 1)
    assert.equal(moved.rewritten['runs.artifact_uri'], 1)
    assert.equal(moved.rewritten['model_versions.source'], 1)
    assert.equal(moved.rewritten['model_versions.storage_location'], 1, 'MLflow 3 records where a version is stored')
    assert.equal(statSync(join(work, 'new', 'db')).mode & 0o777, 0o700, 'the missing directory was created private')
    const read = JSON.parse(mlflow(newDb, READ, runId))
    assert.equal(read.text, 'hello from the old store')
    for (const location of [read.runUri, read.experiment, read.source]) assert.ok(location.includes(newRoot), location)
    const text = await runCli([
      'backup',
      'restore',
      'latest',
      '--repo',
      repo,
      '--to',
      `sqlite:///${join(work, 'text', 'mlflow.db')}`,
      '--artifacts-to',
      join(work, 'text', 'store'),
    ])
    assert.match(
      text.stdout,
      /Artifact locations rewritten from .* to .*: 4 rows \(experiments\.artifact_location 1, runs\.artifact_uri 1, model_versions\.source 1, model_versions\.storage_location 1\)/,
    )
  })

  it('--keep-artifact-locations keeps the rows as they were', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const kept = join(work, 'kept', 'mlflow.db')
    const restored = await runCli([
      'backup',
      'restore',
      'latest',
      '--repo',
      join(work, 'repo'),
      '--to',
      `sqlite:///${kept}`,
      '--artifacts-to',
      join(work, 'kept', 'store'),
      '--keep-artifact-locations',
      '--json',
    ])
    assert.equal(restored.code, 0, restored.stdout + restored.stderr)
    assert.equal(restored.json!.result.artifactLocations, undefined)
    const uri = mlflow(
      kept,
      `
import sys, mlflow
mlflow.set_tracking_uri(f"sqlite:///{sys.argv[1]}")
print(mlflow.MlflowClient().get_run(sys.argv[2]).info.artifact_uri)
`,
      runId,
    )
    assert.ok(uri.includes(oldRoot), uri)
  })
})
