// deploy's decisions against a scripted Connect: app modes, drafts, and a draft preview whose sub-paths Connect
// does not route. The fake records every call so that "nothing changed" can be asserted.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {appModeChanges, deploy, draftsFor, type DeployOptions} from '../../../src/core/deploy.js'
import {connectVersionAtLeast, parseConnectVersion} from '../../../src/core/connect-version.js'
import {inlineStepRunner} from '../../../src/core/ports.js'
import {bundleOf, fakeDeps, GUID, healthy, SERVER} from '../../support/fake-deploy-deps.js'

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
