// backup create --source connect:GUID and restore --to connect:GUID through the fake Connect, which runs the
// real extension with real MLflow: the snapshot streams down through the ops endpoint, the restore goes up
// and is swapped in by the extension under maintenance.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {before, describe, it} from 'node:test'

import {pausedWhileWorking, resumed, runCli, tempDir} from '../support/cli.js'
import {OTHER_KEY, PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {connectAuthEnv, logRichRun, serverSnapshot} from '../support/mlflow-client.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

const fake = await startFakeConnect()
const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const configDir = tempDir('backup-connect-config-')
const env = {CONNECT_SERVER: fake.url, CONNECT_API_KEY: PUBLISHER_KEY, MLFLOWCTL_CONFIG_DIR: configDir}
const repo = tempDir('backup-connect-repo-')
const deployments: Array<{guid: string; contentUrl: string}> = []
const backup = (args: string[], extra: Record<string, string> = {}) =>
  runCli(['backup', ...args, '--json'], {env: {...env, ...extra}, timeoutMs: 300_000})
const client = (contentUrl: string) => ({
  python: venv!.python,
  trackingUri: contentUrl.replace(/\/$/, ''),
  token: '',
  env: connectAuthEnv(venv!.python, PUBLISHER_KEY),
})

describe('backup through the extension (connect:GUID)', () => {
  before(async () => {
    if (!venv) return
    for (const name of ['source', 'target']) {
      const dir = join(tempDir(), name)
      assert.equal((await runCli(['init', dir, '--mlflow-version', venv.mlflowVersion])).code, 0)
      const deployed = await runCli(['deploy', dir, '--new', '--name', `mlflow-backup-${name}`, '--json'], {env})
      assert.equal(deployed.code, 0, deployed.stdout)
      deployments.push({guid: deployed.json!.result.guid, contentUrl: deployed.json!.result.contentUrl})
    }
  })

  it('backs up a deployment from its ops endpoint and restores it into another; the second server shows the same data', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const [source, target] = deployments
    await logRichRun(client(source.contentUrl), 'on-connect')
    const original = await serverSnapshot(client(source.contentUrl))

    const made = await backup(['create', '--source', `connect:${source.guid}`, '--repo', repo])
    assert.equal(made.code, 0, `${made.stdout}\n${made.stderr}`)
    assert.ok(made.json!.result.files >= 2, 'the artifacts came down too')
    const manifestText = readFileSync(join(repo, `${made.json!.result.id}.manifest.json`), 'utf8')
    const manifest = JSON.parse(manifestText)
    assert.deepEqual(
      [manifest.source.kind, manifest.source.contentGuid, manifest.source.engine],
      ['connect', source.guid, 'sqlite'],
    )
    const opsTokens = Object.values(JSON.parse(readFileSync(join(configDir, 'ops-tokens.json'), 'utf8'))) as string[]
    for (const secret of [PUBLISHER_KEY, ...opsTokens])
      assert.ok(!manifestText.includes(secret) && !made.stdout.includes(secret) && !made.stderr.includes(secret))

    const restored = await backup(['restore', made.json!.result.id, '--repo', repo, '--to', `connect:${target.guid}`])
    assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`)
    assert.deepEqual(
      await serverSnapshot(client(target.contentUrl)),
      original,
      'the target deployment shows what the source showed',
    )

    // Now the target holds data: refused without --force; with it, a safety backup comes first.
    const again = await backup(['restore', made.json!.result.id, '--repo', repo, '--to', `connect:${target.guid}`])
    assert.equal(again.json!.error!.code, 'TARGET_NOT_EMPTY')
    const forced = await backup([
      'restore',
      made.json!.result.id,
      '--repo',
      repo,
      '--to',
      `connect:${target.guid}`,
      '--force',
      '--yes',
    ])
    assert.equal(forced.code, 0, forced.stdout)
    assert.ok(forced.json!.result.safetyBackup, 'a safety backup of the deployment was taken')
    assert.deepEqual(await serverSnapshot(client(target.contentUrl)), original)

    // One restore at a time into a deployment: a second one, while the first is caught working, is refused.
    const args = ['backup', 'restore', made.json!.result.id, '--repo', repo, '--to', `connect:${target.guid}`]
    const first = await pausedWhileWorking(
      [...args, '--force', '--yes'],
      join(process.env.MLFLOWCTL_DATA_DIR!, 'restore'),
      env,
    )
    try {
      const second = await backup(args.slice(1).concat(['--force', '--yes']))
      assert.equal(second.code, 5, second.stdout)
      assert.equal(second.json!.error!.code, 'TARGET_LOCKED')
      assert.match(second.json!.error!.message, new RegExp(`connect:${target.guid} \\(a restore, pid \\d+`))
    } finally {
      assert.equal((await resumed(first)).code, 0, 'the first restore finishes')
    }

    // Snapshots of a deployment: it arrives as a fresh copy, so every file is read again, but what did not change
    // is not stored again; a snapshot restores into a deployment as an archive does.
    const snapshots = join(tempDir('connect-snapshots-'), 'repo')
    const snapshot = () =>
      backup(['create', '--source', `connect:${source.guid}`, '--repo', snapshots, '--format', 'snapshot'])
    const one = await snapshot()
    assert.equal(one.code, 0, `${one.stdout}\n${one.stderr}`)
    const two = (await snapshot()).json!.result.snapshot
    assert.ok(two.filesNew > 0, 'a fetched copy is read whole')
    assert.ok(two.bytesAdded < one.json!.result.snapshot.bytesAdded / 2, `${two.bytesAdded} bytes added again`)
    const fromSnapshot = await backup([
      'restore',
      'latest',
      '--repo',
      snapshots,
      '--to',
      `connect:${target.guid}`,
      '--force',
      '--yes',
    ])
    assert.equal(fromSnapshot.code, 0, fromSnapshot.stdout)
    assert.deepEqual(await serverSnapshot(client(target.contentUrl)), original)
  })

  it('a wrong key, a wrong ops token and an unknown GUID each fail with their own code, leaving nothing behind', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const [source] = deployments
    const before = (await backup(['list', '--repo', repo])).json!.result.backups.length
    const wrongKey = await backup(['create', '--source', `connect:${source.guid}`, '--repo', repo], {
      CONNECT_API_KEY: 'not-a-valid-key-000000',
    })
    assert.equal(wrongKey.code, 4, wrongKey.stdout)
    const stranger = await backup(['create', '--source', `connect:${source.guid}`, '--repo', repo], {
      CONNECT_API_KEY: OTHER_KEY,
    })
    assert.equal(stranger.code, 4, stranger.stdout)
    const wrongToken = await backup(['create', '--source', `connect:${source.guid}`, '--repo', repo], {
      MLFLOWCTL_OPS_TOKEN: 'wrong-ops-token',
    })
    assert.equal(wrongToken.json!.error!.code, 'OPS_TOKEN_INVALID')
    assert.equal(wrongToken.code, 4)
    const unknown = await backup(['create', '--source', 'connect:00000000-0000-0000-0000-000000000000', '--repo', repo])
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.json!.error!.message, /00000000-0000-0000-0000-000000000000/)
    const badGuid = await backup(['create', '--source', 'connect:not-a-guid', '--repo', repo])
    assert.equal(badGuid.json!.error!.code, 'GUID_INVALID')
    assert.equal(
      (await backup(['list', '--repo', repo])).json!.result.backups.length,
      before,
      'no failed run left a backup behind',
    )
  })
})
