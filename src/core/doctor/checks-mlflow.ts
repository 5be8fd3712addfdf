// Doctor checks of one layer: MLflow behind Connect: health, version, REST, artifacts.
import type {CheckDefinition} from './runner.js'
import {pass, warn, fail, serverUrl, keyHeader, logsLocation, type DoctorContext} from './context.js'
import {describeStartup, startupFromHealth} from '../extension-contract.js'

export const mlflowChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'mlflow.health',
    category: 'mlflow',
    title: 'MLflow answers /health',
    needs: ['connect.content'],
    async run(ctx) {
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}health`, {headers: keyHeader(ctx)})
      if (answer.status === 200) return pass('/health is OK')
      const logs = logsLocation(ctx)
      // The extension answers 503 with what its start-up is doing, or why it refused (startup.py).
      const startup = answer.status === 503 ? startupFromHealth(answer.body) : undefined
      if (startup?.state === 'refused' && startup.error?.code === 'DATA_DIR_MISSING')
        return fail(
          `the extension ${describeStartup(startup)}`,
          'Connect gives this content no persistent data directory, which local storage needs: ask a Connect administrator to enable persistent storage for the item, or redeploy with custom or cloud storage (mlflowctl init --help).',
        )
      if (startup?.state === 'refused')
        return fail(
          `the extension ${describeStartup(startup)}`,
          `Fix what the message names, then redeploy (mlflowctl deploy DIR); the log has the details: ${logs}`,
        )
      if (startup)
        return warn(
          `the extension ${describeStartup(startup)}; MLflow answers 503 with Retry-After until it is done`,
          'Wait, and run doctor again; clients retry on their own. A large store takes minutes (mlflowctl upgrade plan estimates it).',
        )
      if (answer.status === 502 || answer.status === 503)
        return fail(
          `the content is not running (HTTP ${answer.status}): stopped, crashing, or refusing to start`,
          `Read its log (${logs}); the extension says why it refused in a "startup.refused" line (missing variable, database ahead of the code, pending migrations with MLFLOWCTL_AUTO_MIGRATE=false).`,
        )
      if (answer.status === 403)
        return fail(
          'HTTP 403: MLflow refused the request (its allowed-hosts check), or Connect denied access',
          'Unset MLFLOW_SERVER_ALLOWED_HOSTS on the content (the extension derives it from CONNECT_SERVER), or include the Connect host in it.',
        )
      return fail(`/health answered HTTP ${answer.status || 'nothing'}`, `Read the content's log: ${logs}`)
    },
  },
  {
    id: 'mlflow.version',
    category: 'mlflow',
    title: "/version is the bundle's MLflow",
    needs: ['mlflow.health'],
    async run(ctx) {
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}version`, {headers: keyHeader(ctx)})
      const served = answer.body.trim()
      const pinned = ctx.facts.ops?.bundleMlflowVersion
      if (answer.status !== 200) return fail(`/version answered HTTP ${answer.status}`, 'Read the content log.')
      if (pinned && pinned !== served)
        return fail(
          `serves MLflow ${served}, the bundle pins ${pinned}`,
          'Redeploy the bundle so that Connect rebuilds its environment (mlflowctl deploy DIR --guid GUID).',
        )
      return pass(`MLflow ${served}${pinned ? ' (as pinned)' : ''}`)
    },
  },
  {
    id: 'mlflow.auth',
    category: 'mlflow',
    title: 'Client authentication styles',
    needs: ['mlflow.health'],
    async run(ctx) {
      const url = `${ctx.facts.content!.contentUrl}api/2.0/mlflow/experiments/search?max_results=1`
      const key = await ctx.probes.request(url, {headers: keyHeader(ctx)})
      const bearer = await ctx.probes.request(url, {headers: {Authorization: `Bearer ${ctx.input.apiKey.value}`}})
      const detail = `Key: HTTP ${key.status}; Bearer: HTTP ${bearer.status}`
      if (bearer.status === 200) return pass(`${detail}. Clients: MLFLOW_TRACKING_TOKEN=<api key> is enough`)
      if (key.status === 200)
        return pass(
          `${detail}. Clients: pip install the mlflow-connect-auth plugin and set MLFLOW_TRACKING_AUTH=connect-api-key (see mlflowctl client-env)`,
        )
      return fail(detail, "Neither style is accepted: check the key and the content's access settings.")
    },
  },
  {
    id: 'mlflow.rest',
    category: 'mlflow',
    title: 'REST round trip',
    needs: ['mlflow.health'],
    async run(ctx) {
      const answer = await ctx.probes.request(
        `${ctx.facts.content!.contentUrl}api/2.0/mlflow/experiments/search?max_results=5`,
        {headers: keyHeader(ctx)},
      )
      if (answer.status === 403)
        return fail(
          `experiments/search answered HTTP 403: ${answer.body.slice(0, 200)}`,
          "MLflow's allowed-hosts check refuses Connect's Host header: unset MLFLOW_SERVER_ALLOWED_HOSTS on the content (the extension derives it from CONNECT_SERVER), or add the Connect host to it.",
        )
      if (answer.status !== 200)
        return fail(
          `experiments/search answered HTTP ${answer.status}: ${answer.body.slice(0, 200)}`,
          'Read the content log: the database may be unreachable or its credentials refused.',
        )
      const count = ((JSON.parse(answer.body) as {experiments?: unknown[]}).experiments ?? []).length
      return pass(`experiments/search returned ${count} experiment(s)`)
    },
  },
  {
    id: 'mlflow.origin',
    category: 'mlflow',
    title: 'Requests from the Connect origin are accepted',
    needs: ['mlflow.rest'],
    async run(ctx) {
      const origin = serverUrl(ctx).origin
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}api/2.0/mlflow/experiments/search`, {
        method: 'POST',
        headers: {...keyHeader(ctx), Origin: origin, 'Content-Type': 'application/json'},
        body: '{"max_results": 1}',
      })
      if (answer.status === 403)
        return fail(
          `a POST with Origin ${origin} was refused (HTTP 403) by MLflow's host/CORS checks: the UI will not work`,
          'Unset MLFLOW_SERVER_ALLOWED_HOSTS and MLFLOW_SERVER_CORS_ALLOWED_ORIGINS on the content (the extension derives them from CONNECT_SERVER), or add the Connect host and origin.',
        )
      if (answer.status !== 200)
        return fail(`a POST with Origin ${origin} answered HTTP ${answer.status}`, 'Read the content log.')
      return pass(`POST with Origin ${origin} accepted`)
    },
  },
  {
    id: 'mlflow.artifacts',
    category: 'mlflow',
    title: 'Artifact upload, download and delete (--deep)',
    needs: ['mlflow.rest'],
    unless: (ctx) => (ctx.input.deep ? undefined : 'only with --deep (writes a small file to the artifact store)'),
    async run(ctx) {
      const path = `${ctx.facts.content!.contentUrl}api/2.0/mlflow-artifacts/artifacts/mlflowctl-doctor/${ctx.probes.newId()}.txt`
      const payload = `mlflowctl doctor probe ${new Date(ctx.probes.now()).toISOString()}`
      const put = await ctx.probes.request(path, {
        method: 'PUT',
        headers: {...keyHeader(ctx), 'Content-Type': 'text/plain'},
        body: payload,
      })
      if (put.status !== 200)
        return fail(
          `upload answered HTTP ${put.status}: ${put.body.slice(0, 200)}`,
          'The server cannot write to its artifact store: check MLFLOW_ARTIFACTS_DESTINATION, bucket permissions and the credentials (extension log).',
        )
      const get = await ctx.probes.request(path, {headers: keyHeader(ctx)})
      const del = await ctx.probes.request(path, {method: 'DELETE', headers: keyHeader(ctx)})
      if (get.status !== 200 || get.body !== payload)
        return fail(
          `download answered HTTP ${get.status}${get.status === 200 ? ' with other content' : ''}`,
          'Check read permissions on the artifact store.',
        )
      if (del.status !== 200)
        return warn(
          `delete answered HTTP ${del.status}; a probe file is left under mlflowctl-doctor/`,
          'Check delete permissions on the artifact store, and remove the probe file.',
        )
      return pass('a probe file was written, read back and deleted through the artifact proxy')
    },
  },
]
