import {execFileSync, spawn, type ChildProcessWithoutNullStreams} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import {dirname, join} from 'node:path'

import {tempDir, traceStep} from './cli.js'
import {REPO_ROOT} from './services.js'

// Uses the real MLflow Python client, configured the way users configure it (tracking URI + token).
const SCRIPT = `
import json, os, sys, tempfile
import mlflow
from mlflow import MlflowClient

RESULT = "@@mlflowctl-test-result "
END = "@@mlflowctl-test-end"
FAILED = "@@mlflowctl-test-failed "

def act(action, arg):
    if action == "log":
        mlflow.set_experiment(arg)
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", "0.5")
            mlflow.log_metric("rmse", 0.876, step=1)
            path = os.path.join(tempfile.mkdtemp(), "model.txt")
            with open(path, "w") as handle:
                handle.write("weights-v1")
            mlflow.log_artifact(path)
        return {"runId": run.info.run_id, "artifactUri": run.info.artifact_uri}
    elif action == "rich":
        # Everything a backup must carry: metric history with steps (and a NaN), params, tags, an artifact, a
        # dataset input, a registered model with a version and an alias, and a trace on 3.x.
        client = MlflowClient()
        mlflow.set_experiment(arg)
        with mlflow.start_run() as run:
            mlflow.log_params({"alpha": "0.5", "layers": "3"})
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metric("diverged", float("nan"))
            mlflow.set_tags({"team": "forecasting", "note": "line one\\nline two\\t'quoted'"})
            path = os.path.join(tempfile.mkdtemp(), "model.txt")
            with open(path, "w") as handle:
                handle.write("weights-" + arg)
            mlflow.log_artifact(path)
            mlflow.log_artifact(path, artifact_path="nested/dir")
            import pandas
            frame = pandas.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})
            mlflow.log_input(mlflow.data.from_pandas(frame, name="train-" + arg, targets="y"), context="training")
        if mlflow.__version__.startswith("3."):
            @mlflow.trace
            def predict(x):
                return {"y": x * 2}
            predict(21)
        name = "model-" + arg
        client.create_registered_model(name, tags={"owner": "ops"}, description="restored?")
        version = client.create_model_version(name, source=run.info.artifact_uri, run_id=run.info.run_id)
        client.set_registered_model_alias(name, "champion", version.version)
        return {"runId": run.info.run_id}
    elif action == "snapshot":
        # What a user sees through the server, with NaN spelled out (JSON has no NaN).
        from mlflow.entities import ViewType
        import hashlib, math

        def num(value):
            return "NaN" if isinstance(value, float) and math.isnan(value) else value

        client = MlflowClient()
        out = {"experiments": [], "models": []}
        for exp in sorted(client.search_experiments(view_type=ViewType.ALL), key=lambda e: e.experiment_id):
            runs = []
            for run in sorted(client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000), key=lambda r: r.info.run_id):
                history = {key: [[m.step, m.timestamp, num(m.value)] for m in client.get_metric_history(run.info.run_id, key)] for key in sorted(run.data.metrics)}
                files = {}
                pending = [None]
                while pending:
                    for item in client.list_artifacts(run.info.run_id, pending.pop()):
                        if item.is_dir:
                            pending.append(item.path)
                        else:
                            local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=item.path)
                            files[item.path] = hashlib.sha256(open(local, "rb").read()).hexdigest()
                inputs = sorted([[d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.schema, sorted([t.key, t.value] for t in d.tags)] for d in (run.inputs.dataset_inputs if run.inputs else [])])
                runs.append({"id": run.info.run_id, "status": run.info.status, "start": run.info.start_time, "end": run.info.end_time, "artifactUri": run.info.artifact_uri,
                             "params": run.data.params, "metrics": {k: num(v) for k, v in run.data.metrics.items()}, "tags": run.data.tags, "history": history, "files": files, "inputs": inputs})
            traces = []
            if hasattr(mlflow, "search_traces") and mlflow.__version__.startswith("3."):
                for trace in sorted(mlflow.search_traces(experiment_ids=[exp.experiment_id], return_type="list"), key=lambda t: t.info.trace_id):
                    traces.append({"id": trace.info.trace_id, "state": str(trace.info.state), "spans": sorted([[s.name, json.dumps(s.inputs, sort_keys=True), json.dumps(s.outputs, sort_keys=True)] for s in trace.data.spans])})
            out["experiments"].append({"id": exp.experiment_id, "name": exp.name, "stage": exp.lifecycle_stage, "artifactLocation": exp.artifact_location, "tags": exp.tags, "runs": runs, "traces": traces})
        for model in sorted(client.search_registered_models(), key=lambda m: m.name):
            versions = sorted([[v.version, v.run_id, v.source, v.status] for v in client.search_model_versions(f"name='{model.name}'")])
            out["models"].append({"name": model.name, "description": model.description, "tags": model.tags, "aliases": model.aliases, "versions": versions})
        return out
    elif action == "delete-run":
        MlflowClient().delete_run(arg)
        return {"deleted": arg}
    elif action == "delete-experiment":
        client = MlflowClient()
        experiment = client.get_experiment_by_name(arg)
        client.delete_experiment(experiment.experiment_id)
        return {"deleted": experiment.experiment_id}
    else:
        client = MlflowClient()
        run = client.get_run(arg)
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model.txt")
        with open(local) as handle:
            content = handle.read()
        return {"params": run.data.params, "metrics": run.data.metrics, "artifact": content, "experimentId": run.info.experiment_id}


def fresh_state():
    """What a new interpreter starts with: the tracking URI from the environment, no active run or experiment, and
    new HTTP sessions (a kept-alive connection to a server that restarted since would fail the next request)."""
    from mlflow.tracking import fluent
    from mlflow.utils import request_utils, rest_utils

    for _ in range(10):  # a run a failed request left open; ending it may fail too, when its server is gone
        if not mlflow.active_run():
            break
        try:
            mlflow.end_run()
        except Exception:
            pass
    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    for module in (request_utils, rest_utils):
        for name in ("_cached_get_request_session", "_get_request_session"):
            cached = getattr(module, name, None)
            if cached is not None and hasattr(cached, "cache_clear"):
                cached.cache_clear()


# One interpreter serves many requests (importing mlflow takes seconds of CPU): each request is a JSON line on stdin,
# {"env": {...}, "args": [action, arg, ...]}, run with exactly that environment; each action's result is one marked
# JSON line (MLflow 3 prints its own "View run" lines to stdout), then a marked end line, or an error line.
BASE_ENV = dict(os.environ)
for line in sys.stdin:
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(BASE_ENV)
    os.environ.update(request["env"])
    try:
        fresh_state()
        argv = list(request["args"])
        while argv:
            action = argv.pop(0)
            arg = None if action == "snapshot" else argv.pop(0)
            print(RESULT + json.dumps(act(action, arg)), flush=True)
        print(END, flush=True)
    except Exception as error:
        import traceback

        print(FAILED + json.dumps(traceback.format_exc()), flush=True)
`

export interface ClientTarget {
  python: string
  trackingUri: string
  token: string
  /** Extra client environment (e.g. the Connect auth plugin's variables). */
  env?: Record<string, string>
}

const RESULT = '@@mlflowctl-test-result '
const END = '@@mlflowctl-test-end'
const FAILED = '@@mlflowctl-test-failed '

/** A client interpreter that serves requests one at a time (see the script's loop). */
interface ClientProcess {
  child: ChildProcessWithoutNullStreams
  /** Told of each line the interpreter prints while a request is in flight. */
  onLine?: (line: string) => void
  /** Whether the interpreter keeps the test process alive: only while a request is in flight. */
  hold(held: boolean): void
}

type Handle = {ref(): unknown; unref(): unknown}

/** Idle client interpreters by venv and PYTHONPATH (a plugin directory is on the path from the start). */
const idle = new Map<string, ClientProcess[]>()
let scriptFile: string | undefined

function startClient(python: string, pythonPath: string | undefined, key: string): ClientProcess {
  if (!scriptFile) {
    scriptFile = join(tempDir('mlflow-client-'), 'client.py')
    writeFileSync(scriptFile, SCRIPT)
  }
  const child = spawn(python, [scriptFile], {
    env: {PATH: process.env.PATH, HOME: process.env.HOME, ...(pythonPath ? {PYTHONPATH: pythonPath} : {})},
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const handles = [child, child.stdin, child.stdout, child.stderr] as unknown as Handle[]
  const client: ClientProcess = {
    child,
    hold: (held) => handles.forEach((handle) => (held ? handle.ref() : handle.unref())),
  }
  let partial = ''
  child.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) client.onLine?.(line)
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)))
  // A write to an interpreter that died fails here; its exit below answers the request.
  child.stdin.on('error', () => undefined)
  child.on('exit', (code, signal) => {
    idle.set(
      key,
      (idle.get(key) ?? []).filter((other) => other !== client),
    )
    client.onLine?.(`${FAILED}${JSON.stringify(`the client exited (${code ?? signal}):\n${stderr}`)}`)
  })
  client.hold(false)
  return client
}

/**
 * Runs `args` (actions and their arguments) in a client interpreter of the target's venv, with the environment a
 * user's client has (tracking URI, token, the plugin's variables), and gives each action's JSON result. Interpreters
 * are kept and reused: each request starts from the state a new one has (see the script's fresh_state). A request
 * that logs a trace ("rich") gets an interpreter of its own, which exits after it: MLflow's tracing keeps state of its
 * own (its exporter, its queue) that a later request must not inherit.
 */
async function clientResults(target: ClientTarget, args: string[]): Promise<any[]> {
  const env: Record<string, string> = {
    MLFLOW_TRACKING_URI: target.trackingUri,
    MLFLOW_TRACKING_TOKEN: target.token,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES: '0',
    MLFLOW_ENABLE_ASYNC_TRACE_LOGGING: 'false',
    ...target.env,
  }
  const {PYTHONPATH: pythonPath, ...requestEnv} = env
  const key = `${target.python}\0${pythonPath ?? ''}`
  // Each action but "snapshot" takes one argument.
  const actions: string[] = []
  for (let index = 0; index < args.length; index += args[index] === 'snapshot' ? 1 : 2) actions.push(args[index])
  const oneShot = actions.includes('rich')
  const client = (!oneShot && idle.get(key)?.pop()) || startClient(target.python, pythonPath, key)
  const started = Date.now()
  client.hold(true)
  try {
    const results = await new Promise<any[]>((resolve, reject) => {
      const collected: any[] = []
      const timer = setTimeout(() => {
        client.child.kill('SIGKILL')
        reject(new Error(`the MLflow client took over 180 s: ${args.join(' ')}`))
      }, 180_000)
      client.onLine = (line) => {
        if (line.startsWith(RESULT)) collected.push(JSON.parse(line.slice(RESULT.length)))
        else if (line === END || line.startsWith(FAILED)) {
          clearTimeout(timer)
          client.onLine = undefined
          if (line === END) resolve(collected)
          else reject(new Error(`MLflow client ${args[0]} failed: ${JSON.parse(line.slice(FAILED.length))}`))
        }
      }
      client.child.stdin.write(`${JSON.stringify({env: requestEnv, args})}\n`)
    })
    traceStep(`client ${args[0]}`, started)
    if (oneShot) client.child.stdin.end()
    else idle.set(key, [...(idle.get(key) ?? []), client])
    return results
  } catch (error) {
    client.child.kill('SIGKILL')
    throw error
  } finally {
    client.hold(false)
  }
}

const client = async (target: ClientTarget, args: string[]): Promise<any> => (await clientResults(target, args)).at(-1)

export const logRun = (target: ClientTarget, experiment: string): Promise<{runId: string; artifactUri: string}> =>
  client(target, ['log', experiment])
/** Logs a run with everything a backup must carry; see the script's "rich" action. */
export const logRichRun = (target: ClientTarget, experiment: string): Promise<{runId: string}> =>
  client(target, ['rich', experiment])
/** Everything the server shows: experiments, runs with metric histories and artifact hashes, traces, models. */
export const serverSnapshot = (target: ClientTarget): Promise<any> => client(target, ['snapshot'])
/** logRichRun for each experiment, then serverSnapshot, in one client process (each start imports mlflow anew). */
export const logRichRunsThenSnapshot = (target: ClientTarget, experiments: string[]): Promise<any> =>
  client(target, [...experiments.flatMap((experiment) => ['rich', experiment]), 'snapshot'])
export const readRun = (target: ClientTarget, runId: string): Promise<RunRead> => client(target, ['read', runId])
/** Marks runs deleted, then experiments (by name), as a user does in the UI: gc's raw material. */
export const deleteThrough = (target: ClientTarget, runIds: string[], experiments: string[] = []): Promise<unknown> =>
  client(target, [
    ...runIds.flatMap((id) => ['delete-run', id]),
    ...experiments.flatMap((name) => ['delete-experiment', name]),
  ])
/** readRun for several runs in one client process. */
export const readRuns = (target: ClientTarget, runIds: string[]): Promise<RunRead[]> =>
  clientResults(
    target,
    runIds.flatMap((runId) => ['read', runId]),
  )
interface RunRead {
  params: Record<string, string>
  metrics: Record<string, number>
  artifact: string
}

let pluginDir: string | undefined

/**
 * The client environment that uses the mlflow-connect-auth plugin (templates/client-auth), installed into a side
 * directory so that the shared venvs stay untouched. The plugin is pure Python and every venv here runs the same
 * interpreter, so one install serves them all: it is kept in the test cache, named by a hash of the plugin's
 * sources, and built once a run (pip takes seconds of CPU for each install).
 */
export function connectAuthEnv(python: string, apiKey: string): Record<string, string> {
  pluginDir ??= installedPlugin(python)
  const dir = pluginDir
  return {PYTHONPATH: dir, MLFLOW_TRACKING_AUTH: 'connect-api-key', CONNECT_API_KEY: apiKey, MLFLOW_TRACKING_TOKEN: ''}
}

function installedPlugin(python: string): string {
  const sources = join(REPO_ROOT, 'templates', 'client-auth')
  const hash = createHash('sha256')
  for (const file of readdirSync(sources, {recursive: true, encoding: 'utf8'}).sort()) {
    const path = join(sources, file)
    if (statSync(path).isFile()) hash.update(`${file}\0`).update(readFileSync(path)).update('\0')
  }
  const dir = join(process.env.MLFLOWCTL_CACHE_DIR!, `client-auth-${hash.digest('hex').slice(0, 16)}`)
  if (existsSync(dir)) return dir
  // Built from a copy (setuptools writes build/ and *.egg-info next to the sources), into a scratch directory
  // renamed into place whole: a file running at the same time either finds it complete or builds its own.
  const source = join(tempDir('plugin-src-'), 'client-auth')
  cpSync(sources, source, {recursive: true})
  mkdirSync(dirname(dir), {recursive: true})
  const scratch = mkdtempSync(`${dir}.tmp-`)
  execFileSync(python, ['-m', 'pip', 'install', '-q', '--no-deps', '--target', scratch, source], {stdio: 'pipe'})
  try {
    renameSync(scratch, dir)
  } catch (error) {
    rmSync(scratch, {recursive: true, force: true})
    if (!existsSync(dir)) throw error
  }
  return dir
}
