// The fake Connect's own tests against Connect's documented API, driven through mlflowctl's Connect client.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {ConnectClient} from '../../src/adapters/connect/client.js'
import * as tar from 'tar'

import {MlflowctlError} from '../../src/errors.js'
import {runCli, tempDir} from '../support/cli.js'
import {OTHER_KEY, PUBLISHER_KEY, startFakeConnect, VIEWER_KEY} from '../support/fake-connect.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const connect = (key = PUBLISHER_KEY) => new ConnectClient({server: fake.url, apiKey: key, attempts: 1})

async function bundleFor(version: string, extra: string[] = []): Promise<Buffer> {
  const dir = join(tempDir(), 'ext')
  assert.equal((await runCli(['init', dir, '--mlflow-version', version, ...extra])).code, 0)
  const out = join(tempDir(), 'b.tar.gz')
  assert.equal((await runCli(['bundle', dir, '-o', out])).code, 0)
  return readFileSync(out)
}

/** The answer once the process has finished starting: a 503 that says "starting" or "migrating" is waited out. */
async function settled(url: string): Promise<Response> {
  const deadline = Date.now() + 120_000
  for (;;) {
    const answer = await fetch(url, {headers: {Authorization: `Key ${PUBLISHER_KEY}`}})
    if (answer.status !== 503) return answer
    const body = await answer.text()
    const state = (() => {
      try {
        return (JSON.parse(body) as {state?: string}).state
      } catch {
        return undefined // a 503 that is not the extension's (the fake before the process answers)
      }
    })()
    if ((state !== undefined && !['starting', 'migrating'].includes(state)) || Date.now() > deadline)
      return new Response(body, {status: answer.status, headers: answer.headers})
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

async function waitTask(client: ConnectClient, taskId: string) {
  const output: string[] = []
  let first = 0
  for (;;) {
    const task = await client.getTask(taskId, first, 2)
    output.push(...task.output)
    first = task.last
    if (task.finished) return {...task, output}
  }
}

describe('fake Connect: API', () => {
  it('enforces Key auth: no key and Bearer get 401 code 30; X-RSC-Authorization works', async () => {
    const none = await fetch(`${fake.url}__api__/v1/user`)
    assert.equal(none.status, 401)
    assert.deepEqual(await none.json(), {code: 30, error: 'Invalid login.', payload: null})
    assert.equal(
      (await fetch(`${fake.url}__api__/v1/user`, {headers: {Authorization: `Bearer ${PUBLISHER_KEY}`}})).status,
      401,
    )
    assert.equal(
      (await fetch(`${fake.url}__api__/v1/user`, {headers: {'X-RSC-Authorization': `Key ${PUBLISHER_KEY}`}})).status,
      200,
    )
    assert.equal((await connect().currentUser()).user_role, 'publisher')
  })

  it('creates, reads and patches content; unknown fields are rejected; others get 403; unknown GUIDs 404', async () => {
    const created = await connect().createContent('fake-api-test', 'Fake')
    assert.equal(created.app_mode, 'unknown')
    assert.equal(created.bundle_id, null)
    const patched = await connect().updateContent(created.guid, {min_processes: 1, title: 'MLflow'})
    assert.equal(patched.min_processes, 1)
    assert.equal(patched.title, 'MLflow')
    // Connect's own error codes (its API error table): 121 for an unknown field, 5 for a bad name.
    await assert.rejects(connect().updateContent(created.guid, {bogus: 1}), /HTTP 400 \(Connect error 121/)
    await assert.rejects(connect().createContent('x'), /HTTP 400 \(Connect error 5:/)
    await assert.rejects(
      connect(OTHER_KEY).getContent(created.guid),
      (e: MlflowctlError) => e.code === 'CONNECT_FORBIDDEN',
    )
    await assert.rejects(
      connect(VIEWER_KEY).createContent('viewer-content'),
      (e: MlflowctlError) => e.code === 'CONNECT_FORBIDDEN',
    )
    await assert.rejects(
      connect().getContent('00000000-0000-0000-0000-000000000000'),
      (e: MlflowctlError) => e.code === 'CONTENT_NOT_FOUND',
    )
  })

  it('makes a publisher a collaborator through permissions (role owner), but never a viewer', async () => {
    const {guid} = await connect().createContent('fake-perm-test')
    await assert.rejects(connect(OTHER_KEY).getContent(guid), (e: MlflowctlError) => e.code === 'CONNECT_FORBIDDEN')
    const add = (principal: string) =>
      fetch(`${fake.url}__api__/v1/content/${guid}/permissions`, {
        method: 'POST',
        headers: {Authorization: `Key ${PUBLISHER_KEY}`},
        body: JSON.stringify({principal_guid: principal, principal_type: 'user', role: 'owner'}),
      })
    assert.equal((await add('u-viewer')).status, 400)
    assert.equal((await add('u-other')).status, 200)
    assert.equal((await connect(OTHER_KEY).getContent(guid)).guid, guid)
  })

  it('returns environment names only, and deletes with null; the PATCH answers 200 with the names (OpenAPI)', async () => {
    const {guid} = await connect().createContent('fake-env-test')
    await connect().setEnvironment(guid, [
      {name: 'A', value: 'secret-a'},
      {name: 'B', value: 'b'},
    ])
    await connect().setEnvironment(guid, [{name: 'B', value: null}])
    assert.deepEqual(await connect().environmentNames(guid), ['A'])
    const patch = await fetch(`${fake.url}__api__/v1/content/${guid}/environment`, {
      method: 'PATCH',
      headers: {Authorization: `Key ${PUBLISHER_KEY}`},
      body: JSON.stringify([{name: 'C', value: 'c'}]),
    })
    assert.equal(patch.status, 200)
    assert.deepEqual(await patch.json(), ['A', 'C'])
  })

  it('OAuth exchange errors: 236 for a session token it does not know, 257 for several associations and no audience', async () => {
    const exchange = (token: string) =>
      fetch(`${fake.url}__api__/v1/oauth/integrations/credentials`, {
        method: 'POST',
        headers: {Authorization: `Key ${PUBLISHER_KEY}`, 'Content-Type': 'application/x-www-form-urlencoded'},
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          subject_token_type: 'urn:posit:connect:content-session-token',
          subject_token: token,
        }),
      })
    const unknown = await exchange('not-a-session-token')
    assert.equal(unknown.status, 401)
    assert.equal(((await unknown.json()) as {code: number}).code, 236)
    const {guid} = await connect().createContent('fake-oauth-test')
    await connect().setOAuthIntegrations(guid, ['int-a', 'int-b'])
    const ambiguous = await exchange(fake.content.get(guid)!.sessionToken)
    assert.equal(ambiguous.status, 400)
    assert.equal(((await ambiguous.json()) as {code: number}).code, 257)
  })

  it('hides the server version when told to', async () => {
    assert.equal(await connect().serverVersion(), '2025.10.0')
  })
})

describe('fake Connect: runs bundles', () => {
  it('deploys a real bundle: task output is the startup log, content answers under /content/<guid>/ with a key only', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const {guid} = await connect().createContent('fake-run-test')
    await connect().setEnvironment(guid, [{name: 'MLFLOWCTL_OPS_TOKEN', value: 'ops-token-1234567890'}])
    const first = await connect().uploadBundle(guid, await bundleFor(venv!.mlflowVersion))
    const task = await waitTask(connect(), await connect().deploy(guid, first.id))
    assert.equal(task.code, 0, task.output.join('\n'))
    assert.ok(
      task.output.some((line) => line.includes('Launching the application')),
      'the task launched the process',
    )
    const content = await connect().getContent(guid)
    assert.equal(content.bundle_id, first.id)
    assert.equal(content.app_mode, 'python-fastapi')
    assert.equal((await fetch(`${fake.url}content/${guid}/health`)).status, 401)
    // The process answers at once; its start-up steps run behind /health's 503 until MLflow serves.
    const health = await settled(`${fake.url}content/${guid}/health`)
    assert.equal(await health.text(), 'OK')
    const status = await fetch(`${fake.url}content/${guid}/_mlflowctl/status`, {
      headers: {Authorization: `Key ${PUBLISHER_KEY}`, 'X-Mlflowctl-Ops-Token': 'ops-token-1234567890'},
    })
    const ops = (await status.json()) as {storageMode: string; dataDir: string}
    assert.equal(ops.storageMode, 'local')
    assert.match(ops.dataDir, /data/)

    // A draft's task only prepares it; its process starts cold on the first request to its preview URL. A broken
    // one says why it refused there, and the active bundle keeps serving.
    await connect().setEnvironment(guid, [{name: 'MLFLOW_BACKEND_STORE_URI', value: 'file:///not-a-database'}])
    const broken = await connect().uploadBundle(guid, await bundleFor(venv!.mlflowVersion))
    const prepared = await waitTask(connect(), await connect().deploy(guid, broken.id, false))
    assert.equal(prepared.code, 0, prepared.output.join('\n'))
    assert.equal(fake.content.get(guid)!.drafts.get(broken.id)?.running, undefined, 'no process before a request')
    const refusal = await (await settled(`${fake.url}content/${guid}/_bundle${broken.id}/health`)).json()
    assert.equal((refusal as {state: string}).state, 'refused')
    assert.match(JSON.stringify(refusal), /MLFLOW_BACKEND_STORE_URI/)
    assert.equal((await connect().getContent(guid)).bundle_id, first.id)
    assert.equal(
      (await fetch(`${fake.url}content/${guid}/health`, {headers: {Authorization: `Key ${PUBLISHER_KEY}`}})).status,
      200,
    )

    // A good draft is served at its preview URL, and activating it swaps the active bundle.
    await connect().setEnvironment(guid, [{name: 'MLFLOW_BACKEND_STORE_URI', value: null}])
    const next = await connect().uploadBundle(guid, await bundleFor(venv!.mlflowVersion))
    assert.equal((await waitTask(connect(), await connect().deploy(guid, next.id, false))).code, 0)
    assert.equal((await settled(`${fake.url}content/${guid}/_bundle${next.id}/version`)).status, 200)
    assert.equal((await connect().getContent(guid)).bundle_id, first.id)
    // Deploy answers 202 Accepted with the task (OpenAPI).
    const activation = await fetch(`${fake.url}__api__/v1/content/${guid}/deploy`, {
      method: 'POST',
      headers: {Authorization: `Key ${PUBLISHER_KEY}`},
      body: JSON.stringify({bundle_id: next.id}),
    })
    assert.equal(activation.status, 202)
    assert.equal((await waitTask(connect(), ((await activation.json()) as {task_id: string}).task_id)).code, 0)
    assert.equal((await connect().getContent(guid)).bundle_id, next.id)
    // v1 lists bundles as one bare array in no documented order; the client sorts them, newest first.
    assert.deepEqual(
      (await connect().listBundles(guid)).map((b) => [b.id, b.active]),
      [
        [next.id, true],
        [broken.id, false],
        [first.id, false],
      ],
    )
    const listed = (await (
      await fetch(`${fake.url}__api__/v1/content/${guid}/bundles`, {headers: {Authorization: `Key ${PUBLISHER_KEY}`}})
    ).json()) as Array<{id: string}>
    assert.deepEqual(
      listed.map((b) => b.id),
      [first.id, broken.id, next.id],
      'a bare array, as uploaded',
    )

    // The app mode of deployed content cannot change: error 48, HTTP 403, named APP_MODE_CHANGED by the client.
    const otherMode = await connect().uploadBundle(
      guid,
      await bundleFor(venv!.mlflowVersion, ['--app-mode', 'python-api']),
    )
    await assert.rejects(
      connect().deploy(guid, otherMode.id),
      (e: MlflowctlError) => e.code === 'APP_MODE_CHANGED' && /Connect error 48/.test(e.message),
    )
    assert.equal((await connect().getContent(guid)).bundle_id, next.id)

    // The vanity path serves the same content.
    assert.equal(await connect().setVanity(guid, 'mlflow'), '/mlflow/')
    assert.equal(
      (await fetch(`${fake.url}mlflow/health`, {headers: {Authorization: `Key ${PUBLISHER_KEY}`}})).status,
      200,
    )
  })

  it("kills a process that does not answer HTTP within the item's init_timeout, and its task says so", async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const {guid} = await connect().createContent('fake-slow-start')
    await connect().updateContent(guid, {init_timeout: 3})
    // The real bundle, with an app.py that sleeps 30 s before it serves (its manifest checksum updated).
    const dir = tempDir('slow-bundle-')
    const archive = join(dir, 'b.tar.gz')
    writeFileSync(archive, await bundleFor(venv!.mlflowVersion))
    const files = join(dir, 'files')
    await import('node:fs/promises').then(({mkdir}) => mkdir(files))
    await tar.x({file: archive, cwd: files})
    const app = `import time\ntime.sleep(30)\n${readFileSync(join(files, 'app.py'), 'utf8')}`
    writeFileSync(join(files, 'app.py'), app)
    const manifest = JSON.parse(readFileSync(join(files, 'manifest.json'), 'utf8'))
    manifest.files['app.py'].checksum = createHash('md5').update(app).digest('hex')
    writeFileSync(join(files, 'manifest.json'), JSON.stringify(manifest))
    const slow = join(dir, 'slow.tar.gz')
    await tar.c({gzip: true, file: slow, cwd: files}, ['.'])
    const bundle = await connect().uploadBundle(guid, readFileSync(slow))
    const task = await waitTask(connect(), await connect().deploy(guid, bundle.id))
    assert.equal(task.code, 1, task.output.join('\n'))
    assert.match(task.error ?? '', /application-start-timeout/)
    assert.ok(
      task.output.some((line) => /init_timeout \(3 s\) and was killed/.test(line)),
      task.output.join('\n'),
    )
    assert.equal(fake.content.get(guid)!.running, undefined, 'nothing runs')
  })

  it('works when Connect forwards the full /content/<guid>/ path (stripPrefix off): the extension strips it', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const unstripped = await startFakeConnect({stripPrefix: false})
    const client = new ConnectClient({server: unstripped.url, apiKey: PUBLISHER_KEY, attempts: 1})
    const {guid} = await client.createContent('fake-unstripped')
    const bundle = await client.uploadBundle(guid, await bundleFor(venv!.mlflowVersion))
    assert.equal((await waitTask(client, await client.deploy(guid, bundle.id))).code, 0)
    const headers = {Authorization: `Key ${PUBLISHER_KEY}`, 'Content-Type': 'application/json'}
    assert.equal((await settled(`${unstripped.url}content/${guid}/health`)).status, 200)
    const created = await fetch(`${unstripped.url}content/${guid}/api/2.0/mlflow/experiments/create`, {
      method: 'POST',
      headers,
      body: JSON.stringify({name: 'unstripped'}),
    })
    assert.equal(created.status, 200)
  })
})
