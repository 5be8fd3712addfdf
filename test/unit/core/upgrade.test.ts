// The pure parts of the upgrade lifecycle: choosing a release, rewriting a bundle, planning an upgrade against a
// live state, checking a saved plan, and comparing schemas.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import semver from 'semver'

import {chainTo} from '../../../src/core/catalog.js'
import {renderBundle} from '../../../src/core/bundle.js'
import {diffSchemas} from '../../../src/core/db-migrate.js'
import {inlineStepRunner} from '../../../src/core/ports.js'
import {applyUpgrade, checkSavedPlan} from '../../../src/core/upgrade-apply.js'
import {planUpgrade, PLAN_FORMAT_VERSION, readSavedPlan, type LiveState} from '../../../src/core/upgrade-plan.js'
import type {MlflowctlError} from '../../../src/errors.js'
import {bumpBundle, selectTarget, type BumpInput} from '../../../src/core/version-bump.js'
import {catalog, fakeApplyDeps, head, live, now, overlay, templates} from '../../support/fake-upgrade-deps.js'

const releases = [
  {version: '2.21.3'},
  {version: '2.22.5', requiresPython: '>=3.9'},
  {version: '3.0.1', requiresPython: '>=3.9'},
  {version: '3.17.1'},
  {version: '3.17.2', requiresPython: '>=3.10'},
  {version: '3.18.0rc0'},
]

function bundleInput(
  mlflowVersion: string,
  pythonVersion = '3.11.7',
  storage: 'local' | 'custom' = 'local',
): BumpInput {
  const bundle = renderBundle(templates, {storage, mlflowVersion, pythonVersion, toolVersion: 'test'})
  const files = new Map(
    bundle.files.filter((file) => file.path !== 'manifest.json').map((file) => [file.path, file.content]),
  )
  return {
    info: bundle.info,
    manifest: bundle.manifest,
    requirements: files.get('requirements.txt')!.toString(),
    files,
    templates,
    toolVersion: 'test',
  }
}

describe('version bump', () => {
  it('picks --patch, --minor, --major and --latest among final releases, and refuses what is not there', () => {
    assert.equal(selectTarget('3.17.1', releases, {kind: 'patch'}).version, '3.17.2')
    assert.equal(selectTarget('3.0.1', releases, {kind: 'minor'}).version, '3.17.2')
    assert.equal(selectTarget('2.21.3', releases, {kind: 'major'}).version, '3.17.2')
    assert.equal(selectTarget('2.21.3', releases, {kind: 'latest'}).version, '3.17.2', 'the rc is not a target')
    assert.equal(selectTarget('2.21.3', releases, {kind: 'to', version: 'v3.0.1'}).version, '3.0.1')
    assert.throws(() => selectTarget('3.17.2', releases, {kind: 'major'}), {code: 'NO_NEWER_RELEASE'})
    assert.throws(() => selectTarget('3.17.2', releases, {kind: 'to', version: '3.99.0'}), {code: 'VERSION_UNKNOWN'})
    // An older release only on request: a database the newer MLflow migrated would be ahead of it.
    assert.throws(() => selectTarget('3.17.2', releases, {kind: 'to', version: '3.0.1'}), {code: 'DOWNGRADE_REFUSED'})
    assert.equal(
      selectTarget('3.17.2', releases, {kind: 'to', version: '3.0.1', allowDowngrade: true}).version,
      '3.0.1',
    )
  })

  it('rewrites requirements, mlflowctl.json and manifest.json (MD5s, app mode, Python), keeping added lines', () => {
    const input = bundleInput('2.22.5')
    input.requirements += 'scikit-learn==1.5.0\n'
    input.files.set('requirements.txt', Buffer.from(input.requirements))
    const result = bumpBundle(input, {version: '3.17.2', requiresPython: '>=3.10'})
    const written = new Map(result.writes.map((file) => [file.path, file.content.toString()]))
    const requirements = written.get('requirements.txt')!
    assert.match(requirements, /^mlflow==3\.17\.2$/m)
    assert.doesNotMatch(requirements, /psycopg2-binary|sqlalchemy<2\.1/, 'the 2.x driver pins left with 2.x')
    assert.match(requirements, /^scikit-learn==1\.5\.0$/m)
    assert.deepEqual(result.keptLines, ['scikit-learn==1.5.0'])
    const manifest = JSON.parse(written.get('manifest.json')!)
    // The app mode stays the bundle's (Connect cannot change a deployed item's): python-api, with the bridge.
    assert.equal(manifest.metadata.appmode, 'python-api')
    assert.match(requirements, /^a2wsgi==/m)
    assert.equal(manifest.environment.python.requires, '>=3.10')
    const fresh = renderBundle(templates, {
      storage: 'local',
      mlflowVersion: '3.17.2',
      pythonVersion: '3.11.7',
      toolVersion: 'test',
      appMode: 'python-api',
    })
    for (const [path, {checksum}] of Object.entries(fresh.manifest.files))
      if (path !== 'requirements.txt') assert.equal(manifest.files[path].checksum, checksum, path)
    assert.equal(JSON.parse(written.get('mlflowctl.json')!).mlflowVersion, '3.17.2')
    assert.equal(
      bumpBundle(
        {
          ...input,
          requirements,
          info: JSON.parse(written.get('mlflowctl.json')!),
          manifest,
          files: new Map([...input.files, ...result.writes.map((f) => [f.path, f.content] as const)]),
        },
        {version: '3.17.2'},
      ).changed,
      false,
    )
  })

  it('--app-mode renders another mode: python-fastapi drops the bridge; python-fastapi below 3.3 is refused', () => {
    const result = bumpBundle({...bundleInput('2.22.5'), appMode: 'python-fastapi'}, {version: '3.17.2'})
    const written = new Map(result.writes.map((file) => [file.path, file.content.toString()]))
    assert.deepEqual(result.appMode, {from: 'python-api', to: 'python-fastapi'})
    assert.doesNotMatch(written.get('requirements.txt')!, /a2wsgi/)
    assert.throws(() => bumpBundle({...bundleInput('3.17.2'), appMode: 'python-fastapi'}, {version: '3.0.1'}), {
      code: 'APP_MODE_UNSUPPORTED',
    })
    assert.throws(
      () => bumpBundle(bundleInput('3.17.2'), {version: '3.0.1'}),
      {code: 'APP_MODE_UNSUPPORTED'},
      'keeping python-fastapi below 3.3 is impossible too',
    )
    // Only the mode changes: the same version re-rendered (what APP_MODE_CHANGED's suggestion runs).
    const same = bumpBundle({...bundleInput('3.17.2'), appMode: 'python-api'}, {version: '3.17.2'})
    assert.equal(same.changed, true)
    assert.match(same.writes.find((file) => file.path === 'requirements.txt')!.content.toString(), /^a2wsgi==/m)
  })

  it('replaces any other pin of an MLflow package or of a package the render pins, and refuses a missing file', () => {
    const input = bundleInput('2.22.5')
    input.requirements += 'mlflow-skinny==2.22.5\r\nMLflow[auth]>=2\npsycopg[binary]==3.1.0\npandas<3\n'
    const result = bumpBundle(input, {version: '3.17.2'})
    assert.deepEqual(result.keptLines, ['pandas<3'])
    assert.equal(result.warnings.length, 3, result.warnings.join('\n'))
    const requirements = result.writes.find((file) => file.path === 'requirements.txt')!.content.toString()
    assert.equal(requirements.match(/^psycopg/gm)!.length, 1)
    const missing = bundleInput('2.22.5')
    missing.files.delete('app.py')
    assert.throws(() => bumpBundle(missing, {version: '3.17.2'}), {code: 'BUNDLE_FILE_MISSING'})
  })

  it('refuses a release whose Python floor the bundle misses', () => {
    assert.throws(() => bumpBundle(bundleInput('2.22.5', '3.9.18'), {version: '3.17.2', requiresPython: '>=3.10'}), {
      code: 'PYTHON_TOO_OLD',
    })
  })
})

describe('upgrade plan', () => {
  it('2.22.5 → 3.17.2: the whole slice, heavy steps, breaking changes in range, maintenance strategy', () => {
    const plan = planUpgrade(catalog, overlay, live('2.22.5', head('2.22.5')), '3.17.2', now)
    const chain = chainTo(catalog.tracking, head('3.17.2'))
    assert.deepEqual(
      plan.schema.pending.map((p) => p.revision),
      chain.slice(chain.indexOf(head('2.22.5')) + 1),
    )
    assert.equal(plan.strategy, 'maintenance')
    assert.deepEqual(plan.blockers, [])
    assert.ok(plan.breakingChanges.some((change) => change.from === '3.3.0'))
    assert.ok(
      plan.breakingChanges.every((change) => semver.gt(change.from, '2.22.5') && semver.lte(change.from, '3.17.2')),
    )
    // Connect cannot change a deployed item's app mode: 2.x content stays python-api, served through a2wsgi.
    assert.equal(plan.to.appMode, 'python-api')
    assert.match(plan.to.appModeReason, /kept: .*first deployed as python-api.*a2wsgi/)
    assert.match(plan.pythonChange!, />=3\.9 → >=3\.10/)
  })

  it('a patch release without schema change is zero-downtime; the same release is nothing to do', () => {
    assert.equal(
      planUpgrade(catalog, overlay, live('3.17.1', head('3.17.1')), '3.17.2', now).strategy,
      head('3.17.1') === head('3.17.2') ? 'zero-downtime' : 'maintenance',
    )
    assert.equal(planUpgrade(catalog, overlay, live('3.17.2', head('3.17.2')), '3.17.2', now).strategy, 'none')
  })

  it('python-fastapi content stays python-fastapi, and a target below 3.3 cannot serve it: APP_MODE_UNSUPPORTED blocks', () => {
    const kept = planUpgrade(catalog, overlay, live('3.16.0', head('3.16.0')), '3.17.2', now)
    assert.equal(kept.to.appMode, 'python-fastapi')
    assert.match(kept.to.appModeReason, /own mode/)
    const down = planUpgrade(catalog, overlay, live('3.17.2', head('3.17.2')), '3.0.1', now)
    assert.ok(
      down.blockers.some(
        (blocker) => blocker.code === 'APP_MODE_UNSUPPORTED' && /deploy 3\.0\.1 as new content/.test(blocker.message),
      ),
      JSON.stringify(down.blockers),
    )
  })

  it('blocks a database ahead of the target, a foreign revision, an old SQLite, SQL Server on 2.18/2.19, and version drift', () => {
    const codes = (state: LiveState, to: string) =>
      planUpgrade(catalog, overlay, state, to, now).blockers.map((b) => b.code)
    assert.ok(codes(live('3.17.2', head('3.17.2')), '2.22.5').includes('DB_AHEAD_OF_TARGET'))
    assert.ok(codes(live('2.22.5', 'ffffffffffff'), '3.17.2').includes('FOREIGN_ALEMBIC_REVISION'))
    assert.ok(codes(live('3.5.0', head('3.5.0'), {sqliteVersion: '3.22.0'}), '3.17.2').includes('HAZARD_SQLITE_3_31'))
    assert.ok(codes(live('2.17.2', head('2.17.2'), {dialect: 'mssql'}), '2.18.0').includes('HAZARD_MSSQL_2_18_2_19'))
    assert.ok(
      !codes(live('2.17.2', head('2.17.2'), {dialect: 'postgresql'}), '2.18.0').includes('HAZARD_MSSQL_2_18_2_19'),
    )
    assert.ok(codes(live('2.22.5', head('2.22.5'), {mlflowVersion: '2.21.0'}), '3.17.2').includes('VERSION_DRIFT'))
  })

  it('a saved plan is stale once the bundle, version, schema or storage moved', () => {
    const state = live('2.22.5', head('2.22.5'))
    const plan = planUpgrade(catalog, overlay, state, '3.17.2', now)
    assert.doesNotThrow(() => checkSavedPlan(plan, state))
    assert.throws(() => checkSavedPlan(plan, {...state, bundleId: '8'}), {code: 'PLAN_STALE'})
    assert.throws(() => checkSavedPlan(plan, {...state, status: {...state.status, dbRevision: head('3.0.1')}}), {
      code: 'PLAN_STALE',
    })
    assert.throws(
      () =>
        checkSavedPlan(plan, {
          ...state,
          status: {
            ...state.status,
            storageMode: 'external',
            dialect: 'postgresql',
            backendStore: 'postgresql://mlflow:***@db/mlflow',
          },
        }),
      /external storage \(postgresql\)/,
    )
    // A query string can differ per process (AWS mode's sslrootcert in a temporary directory): not a change.
    const aws = {
      ...state,
      status: {
        ...state.status,
        storageMode: 'aws',
        dialect: 'postgresql',
        backendStore: 'postgresql://mlflow_iam@rds:5432/mlflow?sslmode=verify-full&sslrootcert=/tmp/rds-ca-1/ca.pem',
      },
    }
    const awsPlan = planUpgrade(catalog, overlay, aws, '3.17.2', now)
    assert.doesNotThrow(() =>
      checkSavedPlan(awsPlan, {
        ...aws,
        status: {
          ...aws.status,
          backendStore: 'postgresql://mlflow_iam@rds:5432/mlflow?sslmode=verify-full&sslrootcert=/tmp/rds-ca-2/ca.pem',
        },
      }),
    )
    assert.throws(() => checkSavedPlan(plan, {...state, guid: '11111111-1111-2222-3333-444455556666'}), {
      code: 'PLAN_OTHER_TARGET',
    })
  })
})

describe('schema comparison (rehearsal)', () => {
  it('names missing tables, column differences, indexes and foreign keys', () => {
    const table = {
      columns: {id: {type: 'INTEGER', nullable: false}, name: {type: 'VARCHAR', nullable: true}},
      indexes: ['name'],
      primaryKey: 'id',
      foreignKeys: [],
    }
    assert.deepEqual(diffSchemas({revision: 'a', tables: {t: table}}, {revision: 'a', tables: {t: table}}), [])
    const changed = {...table, columns: {...table.columns, name: {type: 'VARCHAR', nullable: false}}, indexes: []}
    assert.deepEqual(
      diffSchemas({revision: 'a', tables: {t: table, extra: table}}, {revision: 'b', tables: {t: changed}}),
      [
        'revision a (upgraded) vs b (fresh)',
        'table extra only in the upgraded schema',
        't.name: VARCHAR null (upgraded) vs VARCHAR not null (fresh)',
        't index on name only in the upgraded schema',
      ],
    )
  })
})

describe('upgrade apply (fakes around the core)', () => {
  const fakeDeps = fakeApplyDeps
  const options = {server: 'https://connect.example.com', guid: '0b0e8e8e-1111-2222-3333-444455556666', to: '3.17.2'}

  it('locks before reading, and restores nothing when the data did not change (writes meanwhile are kept)', async () => {
    const {deps, calls, history} = fakeDeps()
    await assert.rejects(
      applyUpgrade(deps, options, inlineStepRunner),
      (error: {code: string; message: string}) =>
        error.code === 'UPGRADE_ROLLED_BACK' && /the data was unchanged/.test(error.message),
    )
    assert.deepEqual(calls, ['lock', 'read', 'backup', 'deploy', 'verify', 'unlock'])
    assert.equal(history.at(-1)!.result, 'failed')
  })

  it('restores when the schema moved or tables appeared', async () => {
    for (const serving of [
      {activeBundleId: '7', revision: head('3.17.2')},
      {activeBundleId: '7', revision: head('2.22.5'), tables: ['experiments', 'runs', 'metrics', 'logged_models']},
    ]) {
      const {deps, calls} = fakeDeps({serving: async () => serving})
      // The restore replaced what the attempt left; the safety backup taken of it is named, since writes made
      // during the attempt live there now.
      await assert.rejects(
        applyUpgrade(deps, options, inlineStepRunner),
        (error: {code: string; suggestions: string[]}) =>
          error.code === 'UPGRADE_ROLLED_BACK' && error.suggestions.some((s) => /^Safety backup s1 holds/.test(s)),
      )
      assert.deepEqual(calls, ['lock', 'read', 'backup', 'deploy', 'restore', 'verify', 'unlock'])
    }
  })

  it('a rollback that fails is recorded, with both errors, and says how to finish by hand', async () => {
    const {deps, history, calls, intents} = fakeDeps({
      serving: async () => ({activeBundleId: '8', revision: head('3.17.2')}),
      restore: async () => {
        throw new Error('the extension is not running')
      },
    })
    await assert.rejects(
      applyUpgrade(deps, options, inlineStepRunner),
      (error: {code: string; suggestions: string[]}) =>
        error.code === 'ROLLBACK_FAILED' &&
        /upgrade abort --guid/.test(error.suggestions[0]) &&
        /backup restore \/repo\/b1 --to connect:/.test(error.suggestions[1]),
    )
    assert.match(history.at(-1)!.message!, /draft verification failed.*the extension is not running/)
    assert.equal(calls.at(-1), 'unlock')
    assert.equal(intents.get(options.guid)?.step, 'restore-started', 'the record stays, for upgrade abort')
  })
})

describe('readSavedPlan', () => {
  const code = (value: unknown): string => {
    try {
      readSavedPlan(value, 'plan.json')
      return 'read'
    } catch (error) {
      return (error as MlflowctlError).code
    }
  }

  it('reads a plan of this format, refuses anything else with its own code', () => {
    const plan = {formatVersion: PLAN_FORMAT_VERSION, fingerprint: 'abc', guid: 'g'}
    assert.equal(code(plan), 'read')
    assert.equal(code(undefined), 'PLAN_INVALID', 'an unreadable file or invalid JSON')
    assert.equal(code({guid: 'g', formatVersion: 1}), 'PLAN_INVALID', 'no fingerprint')
    assert.equal(code([plan]), 'PLAN_INVALID')
    assert.equal(code({...plan, formatVersion: PLAN_FORMAT_VERSION + 1}), 'PLAN_FORMAT_UNSUPPORTED')
  })
})
