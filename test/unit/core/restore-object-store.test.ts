// `backup restore --artifacts-to s3://…` in the core, with fake dependencies: the upload happens before the
// database is swapped in, and is deleted again when the swap fails or the upload falls short; a prefix that holds
// objects is refused, --force included.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {restoreBackup, type RestoreDeps} from '../../../src/core/backup/restore.js'
import {restoreDriver} from '../../../src/core/backup/targets/index.js'

const manifest = {
  id: '20261204T000000Z-abcdef',
  format: 2,
  alembicRevision: 'rev1',
  rowCounts: {experiments: 1, alembic_version: 1},
  artifacts: {mode: 'all', files: 2, root: '/old/artifacts'},
  files: [{path: 'db/mlflow.db', size: 1, sha256: 'x'}],
  source: {kind: 'sqlite', location: '/old/mlflow.db'},
}

function fakeDeps(options: {objects?: number; uploaded?: number; swapFails?: boolean}) {
  const events: string[] = []
  const deps = {
    source: {expectedManifest: async () => manifest, extractVerified: async () => manifest},
    target: {
      driver: restoreDriver,
      lock: async () => async () => undefined,
      recover: async () => [],
      inspect: async () => ({holdsData: false, found: [], foreign: [], objectsAtArtifactsTo: options.objects}),
      scratch: async () => ({path: '/scratch', remove: async () => void events.push('scratch removed')}),
      makeDir: async () => undefined,
      moveFile: async () => undefined,
      uploadArtifacts: async (_from: string, to: string) => {
        events.push(`uploaded to ${to}`)
        return {files: options.uploaded ?? 2, undo: async () => void events.push('upload undone')}
      },
      swapIn: async () => {
        if (options.swapFails) throw new Error('the swap failed')
        events.push('swapped')
      },
      checkSqlite: async () => undefined,
    },
    loader: {
      inspectSqlite: async () => ({
        integrity: [],
        foreignKeyViolations: [],
        rowCounts: {experiments: 1, alembic_version: 1},
        objects: ['experiments', 'alembic_version'].map((name) => ({type: 'table', name, table: name, sql: null})),
      }),
      expectedSchema: async (revision: string) => ({
        revision,
        tables: new Set(['experiments', 'alembic_version']),
        triggers: new Map(),
      }),
      countSqliteRows: async () => ({experiments: 1, alembic_version: 1}),
      rewriteArtifactLocationsInSqlite: async () => ({'experiments.artifact_location': 1}),
    },
    clock: {now: () => new Date('2026-12-04T00:00:00Z'), randomId: () => 'r'},
    confirm: async () => true,
    history: {append: async () => undefined},
    paths: {
      join: (...parts: string[]) => parts.join('/'),
      dirname: (path: string) => path.slice(0, path.lastIndexOf('/')),
    },
  }
  return {deps: deps as unknown as RestoreDeps, events}
}

const options = {
  archive: '/repo/a.tar.gz',
  target: {kind: 'sqlite' as const, path: '/new/mlflow.db'},
  artifactsTo: 's3://bucket/restored',
  force: false,
}

describe('restore into an object-store prefix (core)', () => {
  it('uploads before the swap and rewrites the locations to the prefix', async () => {
    const {deps, events} = fakeDeps({})
    const result = await restoreBackup(deps, options)
    assert.deepEqual(events, ['uploaded to s3://bucket/restored', 'swapped', 'scratch removed'])
    assert.equal(result.artifactFiles, 2)
    assert.equal(result.artifactLocations?.to, 's3://bucket/restored')
  })
  it('deletes the upload again when the swap fails or the upload falls short', async () => {
    for (const [fault, expected] of [
      [{swapFails: true}, /the swap failed/],
      [{uploaded: 1}, /Uploaded 1 artifact files, but backup .* has 2/],
    ] as const) {
      const {deps, events} = fakeDeps(fault)
      await assert.rejects(restoreBackup(deps, options), expected)
      assert.ok(events.includes('upload undone'), JSON.stringify(events))
      assert.ok(!events.includes('swapped'))
    }
  })
  it('refuses a prefix that holds objects, --force included, before anything is read', async () => {
    const {deps, events} = fakeDeps({objects: 3})
    await assert.rejects(
      restoreBackup(deps, {...options, force: true}),
      (error: Error & {code?: string}) =>
        error.code === 'TARGET_NOT_EMPTY' && /holds 3 objects.*never deletes objects/.test(error.message),
    )
    assert.deepEqual(events, [])
  })
})
