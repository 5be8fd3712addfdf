// An app-data directory written by real MLflow, for the backup and restore tests: one experiment named LABEL whose
// artifacts live in the directory, RUNS runs each with a param, three steps of one metric and FILES artifact files.
import {execFileSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {tempDir} from './cli.js'

const MAKE_DATA = `
import os, sys
import mlflow
root, label, runs, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mlflow.set_tracking_uri("sqlite:///" + os.path.join(root, "mlflow.db"))
experiment = mlflow.create_experiment(label, artifact_location="file://" + os.path.join(root, "artifacts", label))
for r in range(runs):
    with mlflow.start_run(experiment_id=experiment, run_name=f"{label}-{r}"):
        mlflow.log_param("label", label)
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        staged = os.path.join(root, "..", f"staged-{label}-{r}")
        os.makedirs(staged, exist_ok=True)
        for f in range(files):
            with open(os.path.join(staged, f"file-{f}.txt"), "w") as handle:
                handle.write(f"{label} run {r} file {f}")
        mlflow.log_artifacts(staged)
`

/** Writes `dir` (created) with real MLflow from `python` (a test venv). */
export function makeMlflowData(python: string, dir: string, label: string, runs: number, files: number): void {
  mkdirSync(dir, {recursive: true})
  const script = join(tempDir('make-data-'), 'make_data.py')
  writeFileSync(script, MAKE_DATA)
  execFileSync(python, [script, dir, label, String(runs), String(files)], {
    stdio: 'pipe',
    env: {PATH: process.env.PATH, HOME: process.env.HOME},
  })
}
