import {execFile, execFileSync} from 'node:child_process'
import {cpSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {tempDir} from './cli.js'
import {REPO_ROOT} from './services.js'

const run = promisify(execFile)

// Uses the real MLflow Python client, configured the way users configure it (tracking URI + token).
const SCRIPT = `
import json, os, sys, tempfile
import mlflow
from mlflow import MlflowClient

action = sys.argv[1]
if action == "log":
    mlflow.set_experiment(sys.argv[2])
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_metric("rmse", 0.876, step=1)
        path = os.path.join(tempfile.mkdtemp(), "model.txt")
        with open(path, "w") as handle:
            handle.write("weights-v1")
        mlflow.log_artifact(path)
    print(json.dumps({"runId": run.info.run_id, "artifactUri": run.info.artifact_uri}))
else:
    client = MlflowClient()
    run = client.get_run(sys.argv[2])
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model.txt")
    with open(local) as handle:
        content = handle.read()
    print(json.dumps({"params": run.data.params, "metrics": run.data.metrics, "artifact": content, "experimentId": run.info.experiment_id}))
`

export interface ClientTarget {
  python: string
  trackingUri: string
  token: string
  /** Extra client environment (e.g. the Connect auth plugin's variables). */
  env?: Record<string, string>
}

async function client(target: ClientTarget, args: string[]): Promise<any> {
  const dir = tempDir('mlflow-client-')
  const script = join(dir, 'client.py')
  writeFileSync(script, SCRIPT)
  const {stdout} = await run(target.python, [script, ...args], {
    env: {PATH: process.env.PATH, HOME: process.env.HOME, MLFLOW_TRACKING_URI: target.trackingUri, MLFLOW_TRACKING_TOKEN: target.token, MLFLOW_HTTP_REQUEST_MAX_RETRIES: '0', ...target.env},
    timeout: 180_000,
    maxBuffer: 10 * 1024 * 1024,
  })
  return JSON.parse(stdout.trim().split('\n').at(-1)!)
}

export const logRun = (target: ClientTarget, experiment: string): Promise<{runId: string; artifactUri: string}> => client(target, ['log', experiment])
export const readRun = (target: ClientTarget, runId: string): Promise<{params: Record<string, string>; metrics: Record<string, number>; artifact: string}> => client(target, ['read', runId])

const pluginDirs = new Map<string, string>()

/**
 * The client environment that uses the mlflow-connect-auth plugin (templates/client-auth), installed once
 * per interpreter into a side directory so that the shared venv stays untouched.
 */
export function connectAuthEnv(python: string, apiKey: string): Record<string, string> {
  let dir = pluginDirs.get(python)
  if (!dir) {
    // Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    const source = join(tempDir('plugin-src-'), 'client-auth')
    cpSync(join(REPO_ROOT, 'templates', 'client-auth'), source, {recursive: true})
    dir = tempDir('plugin-')
    execFileSync(python, ['-m', 'pip', 'install', '-q', '--no-deps', '--target', dir, source], {stdio: 'pipe'})
    pluginDirs.set(python, dir)
  }
  return {PYTHONPATH: dir, MLFLOW_TRACKING_AUTH: 'connect-api-key', CONNECT_API_KEY: apiKey, MLFLOW_TRACKING_TOKEN: ''}
}
