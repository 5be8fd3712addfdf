// A kind of restore target the product does not have, added in this one file: its driver, handed to the core through
// RestoreDeps.target.driver as compose/ hands over the real ones. The core restores into it without knowing its kind:
// it plans, installs, names it in messages and history, and warns as the driver says.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {restoreBackup, type RestoreDeps, type RestoreTarget} from '../../../src/core/backup/restore.js'
import type {RestoreTargetDriver} from '../../../src/core/backup/targets/index.js'
import type {HistoryEvent} from '../../../src/core/history.js'

const manifest = {
  id: '20261204T000000Z-abcdef',
  format: 2,
  alembicRevision: 'rev1',
  rowCounts: {experiments: 2, alembic_version: 1},
  artifacts: {mode: 'none', files: 0},
  files: [{path: 'db/mlflow.db', size: 1, sha256: 'x'}],
  source: {kind: 'sqlite', location: '/old/mlflow.db'},
}

type MemoryTarget = {kind: 'memory'; name: string}
const installed = new Map<string, string>()

const memoryTarget: RestoreTargetDriver<RestoreTarget> = {
  describe: (target) => `memory:${(target as unknown as MemoryTarget).name}`,
  asArgument: (target) => `memory:${(target as unknown as MemoryTarget).name}`,
  historyLocation: (target) => `memory://${(target as unknown as MemoryTarget).name}`,
  secrets: () => [],
  plan: (_target, scratchPath, _manifest, deps) => ({
    dbDir: deps.paths.join(scratchPath, 'db'),
    stagedDb: deps.paths.join(scratchPath, 'new', 'mlflow.db'),
  }),
  async install(target, kit) {
    const built = await kit.buildDatabase(undefined)
    installed.set((target as unknown as MemoryTarget).name, kit.plan.stagedDb)
    return {...built, artifactFiles: 0}
  },
  warnings: () => ['a memory target forgets everything when this process exits'],
}

function fakeDeps(history: HistoryEvent[]): RestoreDeps {
  const deps = {
    source: {expectedManifest: async () => manifest, extractVerified: async () => manifest},
    target: {
      driver: () => memoryTarget,
      lock: async () => async () => undefined,
      recover: async () => [],
      inspect: async () => ({holdsData: false, found: [], foreign: []}),
      scratch: async () => ({path: '/scratch', remove: async () => undefined}),
      makeDir: async () => undefined,
      moveFile: async () => undefined,
    },
    loader: {
      inspectSqlite: async () => ({
        integrity: [],
        foreignKeyViolations: [],
        rowCounts: {experiments: 2, alembic_version: 1},
        objects: ['experiments', 'alembic_version'].map((name) => ({type: 'table', name, table: name, sql: null})),
      }),
      expectedSchema: async (revision: string) => ({
        revision,
        tables: new Set(['experiments', 'alembic_version']),
        triggers: new Map(),
      }),
    },
    clock: {now: () => new Date('2026-12-04T00:00:00Z'), randomId: () => 'r'},
    confirm: async () => true,
    history: {append: async (event: HistoryEvent) => void history.push(event)},
    paths: {
      join: (...parts: string[]) => parts.join('/'),
      dirname: (path: string) => path.slice(0, path.lastIndexOf('/')),
    },
  }
  return deps as unknown as RestoreDeps
}

describe('a restore target kind added in one file', () => {
  it('restores into it: the driver plans and installs, names it, and its warning reaches the result', async () => {
    const history: HistoryEvent[] = []
    const target = {kind: 'memory', name: 'team-a'} as unknown as RestoreTarget
    const result = await restoreBackup(fakeDeps(history), {archive: '/repo/a.tar.gz', target, force: false})
    assert.equal(installed.get('team-a'), '/scratch/new/mlflow.db')
    assert.equal(result.target, 'memory:team-a')
    assert.equal(result.rows, 3)
    assert.deepEqual(result.warnings, ['a memory target forgets everything when this process exits'])
    assert.deepEqual(
      history.map((event) => [event.result, event.server, event.message]),
      [['ok', 'memory://team-a', '20261204T000000Z-abcdef into memory:team-a']],
    )
  })
})
