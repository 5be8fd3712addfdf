// deploy's decisions against a scripted Connect: app modes, drafts, and a draft preview whose sub-paths Connect
// does not route (connect-api.md §10). The fake records every call so that "nothing changed" can be asserted.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  appModeChanges,
  deploy,
  draftsFor,
  type DeployBundle,
  type DeployDeps,
  type DeployOptions,
} from '../../../src/core/deploy.js'
import {connectVersionAtLeast, parseConnectVersion} from '../../../src/core/connect-version.js'
import {inlineStepRunner} from '../../../src/core/ports.js'
import type {ProbeResponse} from '../../../src/core/verify-extension.js'

const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
const SERVER = 'https://connect.example.com/'

function bundleOf(appmode: 'python-api' | 'python-fastapi'): DeployBundle {
  return {
    info: {
      bundleFormat: 1,
      extensionVersion: '1',
      mlflowVersion: '3.17.2',
      appMode: appmode,
      storage: 'local',
      requiredEnv: [],
      renderedBy: 'test',
    },
    manifest: {
      version: 1,
      metadata: {appmode, entrypoint: 'app:app'},
      python: {version: '3.11.7', package_manager: {name: 'pip', package_file: 'requirements.txt'}},
      environment: {python: {requires: '>=3.10'}},
      extension: {version: '1'},
      files: {},
    },
    files: ['app.py'],
    archive: async () => Buffer.from('tar'),
  }
}

interface Script {
  deployed?: string
  version?: string
  /** What a GET answers, by URL. */
  probe?: (url: string) => ProbeResponse
}

/** A healthy extension everywhere unless the script says otherwise. */
const healthy = (url: string): ProbeResponse => {
  if (url.endsWith('version')) return {status: 200, body: '3.17.2'}
  if (url.endsWith('_mlflowctl/status'))
    return {status: 200, body: JSON.stringify({dbRevision: 'r1', expectedHead: 'r1'})}
  return {status: 200, body: 'ok'}
}

function fakeDeps(bundle: DeployBundle, script: Script = {}) {
  const calls: string[] = []
  const deps: DeployDeps = {
    connect: {
      currentUser: async () => ({guid: 'u', username: 'publisher', user_role: 'publisher'}),
      serverVersion: async () => script.version,
      getContent: async (guid) => ({
        guid,
        app_mode: script.deployed ?? 'unknown',
        bundle_id: '7',
        locked: false,
        content_url: `${SERVER}content/${guid}/`,
      }),
      createContent: async () => ({guid: GUID}),
      updateContent: async () => void calls.push('updateContent'),
      setEnvironment: async () => void calls.push('setEnvironment'),
      uploadBundle: async () => (calls.push('uploadBundle'), {id: '8'}),
      deploy: async (_guid, bundleId, activate = true) => (calls.push(`deploy ${bundleId} activate=${activate}`), 't'),
      getTask: async () => ({output: [], last: 0, finished: true, code: 0}),
      setVanity: async (_guid, path) => path,
      setOAuthIntegrations: async () => void calls.push('setOAuthIntegrations'),
    },
    probe: {get: async (url) => (calls.push(`GET ${url.replace(SERVER, '/')}`), (script.probe ?? healthy)(url))},
    readBundle: async () => bundle,
    readRecord: async () => undefined,
    writeRecord: async () => void calls.push('writeRecord'),
    opsToken: async () => 'ops',
    saveOpsToken: async () => undefined,
    newToken: () => 'ops',
    appendHistory: async (event) => void calls.push(`history ${event.result}`),
    now: () => 0,
    sleep: async () => undefined,
  }
  return {deps, calls}
}

const options = (extra: Partial<DeployOptions> = {}): DeployOptions => ({
  dir: '/b',
  server: SERVER,
  apiKey: 'k',
  createNew: false,
  guid: GUID,
  env: [],
  oauthIntegrations: [],
  timeoutMs: 60_000,
  dryRun: false,
  ...extra,
})

describe('deploy: app modes', () => {
  it('refuses a bundle of another app mode before any setting, variable or bundle changes (exit 2), with the command that fixes it', async () => {
    const {deps, calls} = fakeDeps(bundleOf('python-fastapi'), {deployed: 'python-api', version: '2025.10.0'})
    const error = await deploy(deps, options(), inlineStepRunner).then(
      () => undefined,
      (e: {code: string; exit: number; suggestions?: string[]}) => e,
    )
    assert.equal(error?.code, 'APP_MODE_CHANGED')
    assert.equal(error?.exit, 2)
    assert.match(error!.suggestions![0], /mlflowctl version bump \/b --to 3\.17\.2 --app-mode python-api/)
    assert.deepEqual(calls, ['history failed'], 'nothing but the ledger entry')
  })

  it('table: what counts as a change of app mode', () => {
    for (const [deployed, bundle, changes] of [
      ['python-api', 'python-api', false],
      ['python-api', 'python-fastapi', true],
      ['unknown', 'python-fastapi', false],
      [null, 'python-api', false],
    ] as const) {
      assert.equal(appModeChanges(deployed, bundle), changes, `${deployed} → ${bundle}`)
    }
  })
})

describe('Connect versions (doctor and deploy compare them)', () => {
  it('table: zero-padded months parse, and compare as numbers', () => {
    assert.deepEqual(parseConnectVersion('2025.06.0'), [2025, 6, 0])
    assert.equal(parseConnectVersion('hidden'), undefined)
    for (const [version, floor, atLeast] of [
      ['2025.09.1', [2025, 10, 0], false],
      ['2025.10.0', [2025, 10, 0], true],
      ['2026.01.0', [2025, 10, 0], true],
      ['2025.10.0', [2025, 10, 1], false],
    ] as const) {
      assert.equal(
        connectVersionAtLeast(parseConnectVersion(version)!, floor),
        atLeast,
        `${version} >= ${floor.join('.')}`,
      )
    }
  })
})

describe('deploy: drafts', () => {
  it('table: auto follows the version; hidden or unparseable means no draft, as rsconnect decides', () => {
    for (const [policy, version, drafts] of [
      ['auto', '2025.10.0', true],
      ['auto', '2025.06.0', true],
      ['auto', '2025.05.1', false],
      ['auto', undefined, false],
      ['auto', 'hidden', false],
      ['on', undefined, true],
      ['off', '2026.01.0', false],
    ] as const) {
      assert.equal(draftsFor(policy, version), drafts, `${policy} ${version}`)
    }
  })

  it('a hidden version gets no activate field and a warning; --drafts on deploys a draft anyway', async () => {
    const hidden = fakeDeps(bundleOf('python-api'), {deployed: 'python-api'})
    const result = await deploy(hidden.deps, options(), inlineStepRunner)
    assert.deepEqual(
      hidden.calls.filter((c) => c.startsWith('deploy')),
      ['deploy 8 activate=true'],
    )
    assert.match(result.warnings!.join(), /hides its version, so no draft is deployed/)
    const forced = fakeDeps(bundleOf('python-api'), {deployed: 'python-api'})
    await deploy(forced.deps, options({drafts: 'on'}), inlineStepRunner)
    assert.deepEqual(
      forced.calls.filter((c) => c.startsWith('deploy')),
      ['deploy 8 activate=false', 'deploy 8 activate=true'],
    )
  })

  it('a draft whose sub-paths Connect does not route: the preview root is verified, the rest after activation, and it says so', async () => {
    const preview = `${SERVER}content/${GUID}/_bundle8/`
    const probe = (url: string) =>
      url.startsWith(preview) && url !== preview ? {status: 404, body: 'Not found'} : healthy(url)
    const {deps, calls} = fakeDeps(bundleOf('python-api'), {deployed: 'python-api', version: '2025.10.0', probe})
    const result = await deploy(deps, options(), inlineStepRunner)
    assert.ok(result.verification!.ok, 'the activated bundle was verified in full')
    assert.match(
      result.warnings!.join(),
      /does not route the draft preview's sub-paths.*only the preview root was verified/,
    )
    assert.ok(calls.includes(`GET /content/${GUID}/_bundle8/`), 'the root itself was asked')
    // When the root does not answer either, the draft fails and nothing is activated.
    const down = fakeDeps(bundleOf('python-api'), {
      deployed: 'python-api',
      version: '2025.10.0',
      probe: (url) => (url.startsWith(preview) ? {status: url === preview ? 503 : 404, body: ''} : healthy(url)),
    })
    await assert.rejects(deploy(down.deps, options(), inlineStepRunner), {code: 'DEPLOY_VERIFY_FAILED'})
    assert.ok(!down.calls.includes('deploy 8 activate=true'), 'not activated')
  })
})
