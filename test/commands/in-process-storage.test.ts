// storage report and gc in process, with the site where they run replaced by a fake through the composition root:
// flags → the request the extension gets, the dry run by default, the backup rule, the --json envelope, the history
// entry and exit codes. The real sites are tested in test/integration/gc-connect.test.ts and the extension's pytest.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import Gc from '../../src/commands/gc.js'
import StorageReportCommand from '../../src/commands/storage/report.js'
import type {CommandDeps} from '../../src/compose/command-deps.js'
import type {GcEvent, GcResultEvent, StorageReport} from '../../src/core/extension-contract.js'
import type {HistoryEvent} from '../../src/core/history.js'
import type {GcRequest, StorageTarget} from '../../src/core/storage.js'
import {ExternalError} from '../../src/errors.js'
import {tempDir} from '../support/cli.js'
import {runInProcess} from '../support/in-process.js'

const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
const env = {CONNECT_SERVER: undefined, CONNECT_API_KEY: undefined, MLFLOWCTL_CONFIG_DIR: tempDir('storage-cfg-')}
const zero = {count: 0, bytes: 0, files: 0}
const kinds = {
  runs: {count: 4, bytes: 4096, files: 8},
  loggedModels: zero,
  traces: zero,
  experiments: zero,
  modelVersionFiles: zero,
  orphans: zero,
}
const done = Object.fromEntries(
  Object.keys(kinds).map((kind) => [kind, {count: 0, files: 0}]),
) as GcResultEvent['deleted']

const report: StorageReport = {
  reportVersion: 1,
  generatedAt: '2026-12-07T09:00:00Z',
  database: {dialect: 'sqlite', bytes: 1 << 20, largestTables: [{name: 'metrics', rows: 1000, bytes: null}]},
  artifacts: {destination: '/data/artifacts', bytes: 5000, files: 3, byExperiment: []},
  traces: {count: 0, bytes: 0, oldestMs: null},
  deleted: {
    experiments: {count: 0, bytes: 0},
    runs: {count: 4, bytes: 4096},
    loggedModels: {count: 0, bytes: 0},
    modelVersions: {count: 0, bytes: 0},
    oldestDeletedRunMs: null,
  },
  orphans: {
    count: 0,
    bytes: 0,
    pastGrace: 0,
    graceSeconds: 86400,
    listed: [],
    unrecognised: {count: 0, bytes: 0, listed: []},
  },
  estimated: ['database.tables.rows'],
}

function fakeSite(options: {busy?: boolean} = {}) {
  const calls: {requests: GcRequest[]; targets: StorageTarget[]; backups: unknown[]; history: HistoryEvent[]} = {
    requests: [],
    targets: [],
    backups: [],
    history: [],
  }
  const deps: Partial<CommandDeps> = {
    async storageSite(_settings, target) {
      calls.targets.push(target)
      return {
        site: {
          location: `connect:${GUID}`,
          guid: GUID,
          report: async () => report,
          async gc(request, onEvent: (event: GcEvent) => void) {
            calls.requests.push(request)
            if (options.busy) throw new ExternalError('GC_RUNNING', 'another gc or retention pass is running')
            onEvent({event: 'progress', kind: 'runs', done: 4, of: 4})
            return {
              event: 'result',
              dryRun: !request.yes,
              kinds,
              deleted: request.yes ? {...done, runs: {count: 4, files: 8}} : done,
              bytesFreed: request.yes ? 4096 : 0,
              kept: 0,
              seconds: 0.5,
              longestTransactionSeconds: 0.01,
            }
          },
        },
        backupSource: {source: `connect:${GUID}`},
        secrets: [],
      }
    },
    async gcBackup(options) {
      calls.backups.push(options)
      return {id: '20261207T090000Z-abcd'} as Awaited<ReturnType<CommandDeps['gcBackup']>>
    },
    history: () =>
      ({
        path: '/dev/null',
        append: async (event: HistoryEvent) => void calls.history.push(event),
        read: async () =>
          [
            {
              v: 1,
              time: '2026-12-01T00:00:00Z',
              action: 'backup',
              result: 'ok',
              server: `connect:${GUID}`,
              message: 'x (1000 bytes)',
            },
            {
              v: 1,
              time: '2026-12-02T00:00:00Z',
              action: 'backup',
              result: 'ok',
              server: 'elsewhere',
              message: 'y (5 bytes)',
            },
          ] as HistoryEvent[],
      }) as unknown as ReturnType<CommandDeps['history']>,
  }
  return {deps, calls}
}

describe('storage report and gc (in process)', () => {
  it("storage report: the site chosen from --guid, the report with the trend of this store's backups", async () => {
    const {deps, calls} = fakeSite()
    const result = await runInProcess(StorageReportCommand, ['--guid', GUID, '--json'], {deps, env})
    assert.equal(result.code, 0, result.stderr)
    assert.deepEqual(calls.targets, [{kind: 'connect', guid: GUID}])
    assert.equal(result.json!.result.deleted.runs.count, 4)
    assert.deepEqual(result.json!.result.trend, [{time: '2026-12-01T00:00:00Z', bytes: 1000}])
    const text = await runInProcess(StorageReportCommand, ['--guid', GUID], {deps, env})
    assert.match(text.stdout, /~1,000/, 'estimates are marked')
  })

  it('gc: a dry run by default, with the flags as the request; nothing backed up, nothing in the ledger', async () => {
    const {deps, calls} = fakeSite()
    const result = await runInProcess(
      Gc,
      [
        '--guid',
        GUID,
        '--older-than',
        '7d',
        '--experiment-ids',
        '1, 2',
        '--traces-older-than',
        '90d',
        '--orphans',
        '--json',
      ],
      {deps, env},
    )
    assert.equal(result.code, 0, result.stderr)
    assert.deepEqual(calls.requests, [
      {
        olderThanMs: 7 * 86_400_000,
        experimentIds: ['1', '2'],
        tracesOlderThanMs: 90 * 86_400_000,
        orphans: true,
        graceSeconds: 86_400,
        yes: false,
      },
    ])
    assert.equal(result.json!.result.dryRun, true)
    assert.deepEqual([calls.backups, calls.history], [[], []])
  })

  it('gc --yes: refused without a repository (exit 2) before anything runs; with --repo it backs up first', async () => {
    const {deps, calls} = fakeSite()
    const refused = await runInProcess(Gc, ['--guid', GUID, '--yes', '--json'], {deps, env})
    assert.equal(refused.code, 2)
    assert.equal(refused.json!.error!.code, 'GC_NEEDS_BACKUP')
    assert.deepEqual(calls.requests, [])

    const purged = await runInProcess(Gc, ['--guid', GUID, '--yes', '--repo', '/backups', '--json'], {deps, env})
    assert.equal(purged.code, 0, purged.stderr)
    assert.equal(purged.json!.result.backupId, '20261207T090000Z-abcd')
    assert.equal((calls.backups[0] as {source: string; repo: string}).repo, '/backups')
    assert.equal(calls.history.length, 1)
    assert.deepEqual([calls.history[0].action, calls.history[0].result, calls.history[0].guid], ['gc', 'ok', GUID])
    assert.match(calls.history[0].message!, /freed 4096 bytes: runs 4 \(8 files\); backup 20261207T090000Z-abcd first/)

    const unsafe = await runInProcess(Gc, ['--guid', GUID, '--yes', '--no-backup', '--json'], {deps, env})
    assert.equal(unsafe.code, 0)
    assert.equal(calls.backups.length, 1, '--no-backup takes none')
  })

  it('gc: another gc holds the lock → exit 5 GC_RUNNING, and the ledger says it failed', async () => {
    const {deps, calls} = fakeSite({busy: true})
    const result = await runInProcess(Gc, ['--guid', GUID, '--yes', '--no-backup', '--json'], {deps, env})
    assert.equal(result.code, 5)
    assert.equal(result.json!.error!.code, 'GC_RUNNING')
    assert.deepEqual([calls.history[0].action, calls.history[0].result], ['gc', 'failed'])
  })

  it('exactly one of --guid, --dev, --db; --db needs --artifacts-source', async () => {
    const {deps} = fakeSite()
    assert.equal((await runInProcess(Gc, ['--json'], {deps, env})).code, 2)
    assert.equal((await runInProcess(Gc, ['--guid', GUID, '--dev', '.', '--json'], {deps, env})).code, 2)
    const noArtifacts = await runInProcess(Gc, ['--db', 'sqlite:////tmp/x.db', '--json'], {deps, env})
    assert.equal(noArtifacts.code, 2)
    assert.equal(noArtifacts.json!.error!.code, 'ARTIFACTS_SOURCE_REQUIRED')
    const bad = await runInProcess(Gc, ['--guid', GUID, '--older-than', 'a month', '--json'], {deps, env})
    assert.equal(bad.json!.error!.code, 'INVALID_DURATION')
  })
})
