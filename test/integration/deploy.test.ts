// e2e: the built CLI against the fake Connect, which really runs the bundles with real MLflow.
import assert from 'node:assert/strict'
import {readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {runCli, tempDir, type CliResult} from '../support/cli.js'
import {connectAuthEnv, logRun, readRun} from '../support/mlflow-client.js'
import {PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const configDir = tempDir('deploy-config-')
const env = {CONNECT_SERVER: fake.url, CONNECT_API_KEY: PUBLISHER_KEY, MLFLOWCTL_CONFIG_DIR: configDir}
const deployCli = (args: string[], extra: Record<string, string> = {}) =>
  runCli(['deploy', ...args, '--json'], {env: {...env, ...extra}})
const key = {Authorization: `Key ${PUBLISHER_KEY}`, 'Content-Type': 'application/json'}

function opsTokens(): string[] {
  return Object.values(JSON.parse(readFileSync(join(configDir, 'ops-tokens.json'), 'utf8')) as Record<string, string>)
}

function assertNoSecrets(...results: CliResult[]) {
  for (const result of results) {
    for (const secret of [PUBLISHER_KEY, ...opsTokens()]) {
      assert.ok(!result.stdout.includes(secret) && !result.stderr.includes(secret), 'a secret reached the output')
    }
  }
}

describe('mlflowctl deploy against the fake Connect', () => {
  it('deploys new content, redeploys to the same GUID keeping data, and survives a broken bundle', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)

    const dry = await deployCli([dir, '--new', '--name', 'mlflow-e2e', '--dry-run'])
    assert.equal(dry.code, 0, dry.stdout)
    assert.equal(dry.json!.result.dryRun, true)
    assert.ok(dry.json!.result.plan.envNames.includes('MLFLOWCTL_OPS_TOKEN'))
    assert.equal(fake.content.size, 0, 'a dry run touches nothing')

    const first = await deployCli([dir, '--new', '--name', 'mlflow-e2e', '--title', 'MLflow', '-E', 'TEAM=ml'])
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`)
    const {guid, bundleId, contentUrl, verification} = first.json!.result
    assert.equal(verification.ok, true)
    assert.equal(first.json!.result.draft, true)
    assert.equal(statSync(join(configDir, 'ops-tokens.json')).mode & 0o777, 0o600)
    assert.equal(fake.content.get(guid)!.settings.min_processes, 1)
    assert.deepEqual([...fake.content.get(guid)!.env.keys()].sort(), ['MLFLOWCTL_OPS_TOKEN', 'TEAM'])

    // A run logged with the real MLflow client through Connect's content URL...
    const client = {
      python: venv!.python,
      trackingUri: contentUrl.replace(/\/$/, ''),
      token: '',
      env: connectAuthEnv(venv!.python, PUBLISHER_KEY),
    }
    const {runId} = await logRun(client, 'kept')

    // ...survives a redeploy to the same GUID (found from the deployment record) with a changed env var.
    const second = await deployCli([dir, '-E', 'TEAM=platform'])
    assert.equal(second.code, 0, second.stdout)
    assert.equal(second.json!.result.guid, guid)
    assert.notEqual(second.json!.result.bundleId, bundleId)
    assert.equal(second.json!.result.previousBundleId, bundleId)
    const kept = await readRun(client, runId)
    assert.deepEqual(kept.params, {alpha: '0.5'})
    assert.equal(kept.artifact, 'weights-v1')

    // A bundle whose start-up refuses: its draft says why at the preview URL; exit 6 with the reason and URLs, nothing
    // activated, the previous bundle still answers.
    const broken = await deployCli([dir, '-E', 'MLFLOW_BACKEND_STORE_URI=file:///not-a-database'])
    assert.equal(broken.code, 6, broken.stdout)
    assert.equal(broken.json!.error!.code, 'DEPLOY_VERIFY_FAILED')
    assert.match(
      broken.json!.error!.message,
      /the extension refused to start \(STARTUP_REFUSED\): .*MLFLOW_BACKEND_STORE_URI/,
    )
    assert.ok(broken.json!.error!.suggestions.some((s: string) => s.includes('/logs')))
    assert.equal(fake.content.get(guid)!.activeBundle, second.json!.result.bundleId)
    assert.equal((await fetch(`${contentUrl}health`, {headers: key})).status, 200)
    assertNoSecrets(dry, first, second, broken)
  })

  it('bounds the wait for a deploy task by --timeout (exit 5)', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const slow = await deployCli([dir, '--new', '--name', 'mlflow-timeout', '--timeout', '1'])
    assert.equal(slow.code, 5)
    assert.equal(slow.json!.error!.code, 'DEPLOY_TIMEOUT')
    // The task, then the extension's start (a cold draft, its migrations): both within --timeout.
    assert.match(slow.json!.error!.message, /within 1 s/)
  })

  it('a wrong key exits 4 with a hint; an unknown GUID exits 3', async () => {
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir])).code, 0)
    const wrong = await deployCli([dir, '--guid', '00000000-0000-0000-0000-000000000000'], {
      CONNECT_API_KEY: 'wrong-key-000000000000',
    })
    assert.equal(wrong.code, 4)
    assert.equal(wrong.json!.error!.code, 'CONNECT_UNAUTHORIZED')
    assert.match(wrong.json!.error!.suggestions[0], /API key/)
    const unknown = await deployCli([dir, '--guid', '00000000-0000-0000-0000-000000000000'])
    assert.equal(unknown.code, 3)
    assert.equal(unknown.json!.error!.code, 'CONTENT_NOT_FOUND')
    const noTarget = await deployCli([dir])
    assert.equal(noTarget.code, 2)
    assert.equal(noTarget.json!.error!.code, 'NO_TARGET')
  })

  it('a server that hides its version gets no draft (no activate field); a draft whose sub-paths Connect does not route is verified at its root, then in full once active', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    // A hidden version: the fake refuses the activate field, as a server older than 2025.06 would.
    const hidden = await startFakeConnect({version: null})
    const plain = await runCli(['deploy', dir, '--new', '--name', 'hidden-version', '--json'], {
      env: {...env, CONNECT_SERVER: hidden.url, MLFLOWCTL_CONFIG_DIR: tempDir('deploy-hidden-')},
    })
    assert.equal(plain.code, 0, plain.stdout)
    assert.equal(plain.json!.result.draft, false)
    assert.ok(
      hidden.deployRequests.length > 0 && hidden.deployRequests.every((body) => !('activate' in body)),
      JSON.stringify(hidden.deployRequests),
    )
    assert.match(plain.json!.warnings!.join(), /hides its version, so no draft is deployed/)
    // Preview sub-paths answered by Connect's own 404.
    const rootOnly = await startFakeConnect({draftSubpaths: false})
    const degraded = await runCli(['deploy', dir, '--new', '--name', 'root-only-preview', '--json'], {
      env: {...env, CONNECT_SERVER: rootOnly.url, MLFLOWCTL_CONFIG_DIR: tempDir('deploy-root-only-')},
    })
    assert.equal(degraded.code, 0, degraded.stdout)
    assert.equal(degraded.json!.result.draft, true)
    assert.equal(degraded.json!.result.verification.ok, true, 'verified in full once active')
    assert.match(degraded.json!.warnings!.join(), /does not route the draft preview's sub-paths/)
  })

  it('records the deployment before the vanity path, warns when Connect refuses the path, and verifies by GUID', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const taken = join(tempDir(), 'ext')
    const second = join(tempDir(), 'ext')
    for (const dir of [taken, second])
      assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const owner = await deployCli([taken, '--new', '--name', 'vanity-owner', '--vanity', 'team-a'])
    assert.equal(owner.code, 0, owner.stdout)
    // The path is taken (Connect error 51, HTTP 409): the deployment stands, is recorded, and says how to retry.
    const refused = await deployCli([second, '--new', '--name', 'vanity-second', '--vanity', 'team-a'])
    assert.equal(refused.code, 0, refused.stdout)
    assert.match(
      refused.json!.warnings!.join(),
      /taken by other content.*Retry it: mlflowctl deploy .* --vanity team-a/,
    )
    const again = await deployCli([second])
    assert.equal(again.code, 0, again.stdout)
    assert.equal(again.json!.result.guid, refused.json!.result.guid, 'the record named the GUID')
    // A redeploy of content with a vanity verifies its draft by GUID, never through the vanity path (which serves
    // the active bundle).
    const guid = owner.json!.result.guid as string
    const before = fake.contentRequests.length
    const redeploy = await deployCli([taken])
    assert.equal(redeploy.code, 0, redeploy.stdout)
    const read = fake.contentRequests.slice(before)
    assert.ok(read.includes(`/content/${guid}/_bundle${redeploy.json!.result.bundleId}/health`), read.join('\n'))
    assert.ok(!read.some((path) => path.startsWith('/team-a/')), read.join('\n'))
  })

  it('refuses local storage before activating anything when Connect gives no persistent data directory', async (t) => {
    const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const bare = await startFakeConnect({persistentStorage: false})
    const dir = join(tempDir(), 'ext')
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv!.mlflowVersion])).code, 0)
    const refused = await runCli(['deploy', dir, '--new', '--name', 'no-data-dir', '--json'], {
      env: {...env, CONNECT_SERVER: bare.url, MLFLOWCTL_CONFIG_DIR: tempDir('deploy-bare-')},
    })
    assert.equal(refused.code, 3, refused.stdout)
    assert.equal(refused.json!.error!.code, 'DATA_DIR_MISSING')
    assert.match(
      refused.json!.error!.message,
      /no persistent data directory \(CONNECT_CONTENT_DATA_DIR is not set\).*Nothing was activated/,
    )
    const hints = refused.json!.error!.suggestions.join('\n')
    assert.match(hints, /administrator to enable persistent storage/)
    assert.match(hints, /custom storage .* cloud storage/)
    const [item] = [...bare.content.values()]
    assert.equal(item.activeBundle, null, 'nothing activated')
    assert.match(
      hints,
      new RegExp(`mlflowctl deploy .* --guid ${item.guid}`),
      'a retry goes to the content --new created',
    )
  })
})
