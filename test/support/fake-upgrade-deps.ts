// The upgrade's test bed without outside systems: the real migration catalog, a live deployment as the extension
// would report it, and ApplyDeps whose steps are recorded (deploying fails unless a test overrides it). Shared by
// the unit tests of core/upgrade-apply.ts and the in-process command tests of upgrade apply.
import {readFileSync} from 'node:fs'

import {renderBundle} from '../../src/core/bundle.js'
import {findRelease, type CatalogOverlay, type MigrationCatalog} from '../../src/core/catalog.js'
import type {HistoryEvent} from '../../src/core/history.js'
import type {ApplyDeps} from '../../src/core/upgrade-apply.js'
import type {UpgradeIntent} from '../../src/core/upgrade-intent.js'
import type {LiveState} from '../../src/core/upgrade-plan.js'
import {EXTENSION_TEMPLATES, readTree} from '../../src/adapters/fs/bundle-dir.js'

export const catalog = JSON.parse(
  readFileSync(new URL('../../catalog/mlflow-migrations.json', import.meta.url), 'utf8'),
) as MigrationCatalog
export const overlay = JSON.parse(
  readFileSync(new URL('../../catalog/overlay.json', import.meta.url), 'utf8'),
) as CatalogOverlay
export const templates = await readTree(EXTENSION_TEMPLATES)

export function live(
  mlflowVersion: string,
  revision: string | null,
  overrides: Partial<LiveState['status']> = {},
): LiveState {
  const bundle = renderBundle(templates, {
    storage: 'local',
    mlflowVersion,
    pythonVersion: '3.11.7',
    toolVersion: 'test',
  })
  return {
    server: 'https://connect.example.com',
    guid: '0b0e8e8e-1111-2222-3333-444455556666',
    bundleId: '7',
    bundle: {info: bundle.info, manifest: bundle.manifest},
    status: {
      mlflowVersion,
      dbRevision: revision,
      schemaState: 'current',
      storageMode: 'local',
      dialect: 'sqlite',
      pythonVersion: '3.11.7',
      sqliteVersion: '3.40.1',
      tables: ['experiments', 'runs', 'metrics'],
      rowEstimates: {metrics: 5_000_000},
      ...overrides,
    },
  }
}
export const head = (version: string) => findRelease(catalog, version).trackingHead
export const now = new Date('2026-11-28T12:00:00Z')

export function fakeApplyDeps(overrides: Partial<ApplyDeps> = {}) {
  const calls: string[] = []
  const history: HistoryEvent[] = []
  const intents = new Map<string, UpgradeIntent>()
  const steps: string[] = []
  const state = live('2.22.5', head('2.22.5'))
  const deps: ApplyDeps = {
    catalog,
    overlay,
    lock: async () => (calls.push('lock'), async () => void calls.push('unlock')),
    readLive: async () => (calls.push('read'), {state, bundleDir: '/scratch'}),
    backup: async () => (calls.push('backup'), {id: 'b1', path: '/repo/b1', revision: head('2.22.5')}),
    bumpAndDeploy: async () => {
      calls.push('deploy')
      throw new Error('draft verification failed')
    },
    serving: async () => ({activeBundleId: '7', revision: head('2.22.5'), tables: state.status.tables}),
    restore: async () => (calls.push('restore'), {safetyBackup: 's1'}),
    activate: async () => void calls.push('activate'),
    verify: async () => (calls.push('verify'), {ok: true, failures: []}),
    confirm: async () => true,
    appendHistory: async (event) => void history.push(event),
    intents: {
      read: async (guid) => intents.get(guid),
      write: async (intent) => void intents.set(intent.guid, structuredClone(intent)),
      clear: async (guid) => void intents.delete(guid),
    },
    reached: (step) => void steps.push(step),
    now: () => now,
    ...overrides,
  }
  return {deps, calls, history, intents, steps}
}
