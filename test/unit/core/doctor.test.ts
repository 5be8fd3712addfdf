import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {DEV_DOCTOR_CHECKS, DOCTOR_CHECKS, doctorExitCode} from '../../../src/core/doctor/checks.js'
import {clientChecks} from '../../../src/core/doctor/checks-client.js'
import {configChecks} from '../../../src/core/doctor/checks-config.js'
import {connectChecks} from '../../../src/core/doctor/checks-connect.js'
import {databaseChecks} from '../../../src/core/doctor/checks-database.js'
import {devChecks} from '../../../src/core/doctor/checks-dev.js'
import {extensionChecks} from '../../../src/core/doctor/checks-extension.js'
import {mlflowChecks} from '../../../src/core/doctor/checks-mlflow.js'
import {upgradeChecks} from '../../../src/core/doctor/checks-upgrade.js'
import type {DoctorContext} from '../../../src/core/doctor/context.js'
import type {UpgradeIntent} from '../../../src/core/upgrade-intent.js'
import {runChecks, selectChecks, summarize, type CheckDefinition} from '../../../src/core/doctor/runner.js'
import {parseDuration, parseSize} from '../../../src/core/units.js'
import {UsageError} from '../../../src/errors.js'

type Ctx = {log: string[]}
const check = (
  id: string,
  run: CheckDefinition<Ctx>['run'],
  needs?: string[],
  extra: Partial<CheckDefinition<Ctx>> = {},
): CheckDefinition<Ctx> => ({id, category: id.split('.')[0] as 'connect', title: id, needs, run, ...extra})
const ok =
  (detail = 'fine') =>
  async () => ({status: 'pass' as const, detail})

describe('doctor runner', () => {
  it('runs independent checks concurrently and dependents after what they need', async () => {
    const ctx: Ctx = {log: []}
    const slow = (id: string) => async (c: Ctx) => {
      c.log.push(`start ${id}`)
      await new Promise((resolve) => setTimeout(resolve, 30))
      c.log.push(`end ${id}`)
      return {status: 'pass' as const, detail: id}
    }
    const results = await runChecks(
      [
        check('connect.a', slow('a')),
        check('connect.b', slow('b')),
        check('connect.c', slow('c'), ['connect.a', 'connect.b']),
      ],
      ctx,
      {timeoutMs: 5000},
    )
    assert.deepEqual(ctx.log.slice(0, 2).sort(), ['start a', 'start b'], 'a and b started before either ended')
    assert.equal(ctx.log.indexOf('start c') > Math.max(ctx.log.indexOf('end a'), ctx.log.indexOf('end b')), true)
    assert.deepEqual(
      results.map((r) => r.id),
      ['connect.a', 'connect.b', 'connect.c'],
      'results keep definition order',
    )
  })

  it('skips dependents of a failure with the root cause, and a timeout fails one check only', async () => {
    const results = await runChecks(
      [
        check('connect.tcp', async () => ({status: 'fail', detail: 'refused', fix: 'start it'})),
        check('connect.auth', ok(), ['connect.tcp']),
        check('mlflow.health', ok(), ['connect.auth']),
        check('mlflow.hang', () => new Promise(() => undefined)),
        check('mlflow.other', ok()),
      ],
      {log: []},
      {timeoutMs: 50},
    )
    const by = new Map(results.map((r) => [r.id, r]))
    assert.equal(by.get('connect.auth')!.status, 'skip')
    assert.equal(by.get('connect.auth')!.detail, 'connect.tcp failed (connect.tcp)')
    assert.equal(
      by.get('mlflow.health')!.detail,
      'connect.tcp failed (connect.tcp)',
      'the root cause travels down the chain',
    )
    assert.equal(by.get('mlflow.hang')!.status, 'fail')
    assert.match(by.get('mlflow.hang')!.detail, /no answer within 0\.1 s|within/)
    assert.equal(by.get('mlflow.other')!.status, 'pass')
    assert.deepEqual(summarize(results), {pass: 1, warn: 0, fail: 2, skip: 2})
  })

  it('turns a throwing check into a failure with a bug hint, and honours unless()', async () => {
    const results = await runChecks(
      [
        check('connect.boom', async () => {
          throw new Error('oops')
        }),
        check('connect.opt', ok(), undefined, {unless: () => 'only with --deep'}),
      ],
      {log: []},
      {timeoutMs: 1000},
    )
    assert.match(results[0].detail, /the check itself failed: oops/)
    assert.deepEqual([results[1].status, results[1].detail], ['skip', 'only with --deep'])
  })

  it('--only adds what the selected checks need; --skip removes and dependents say why; unknown IDs are refused', async () => {
    const all = [
      check('connect.a', ok()),
      check('connect.b', ok(), ['connect.a']),
      check('mlflow.c', ok(), ['connect.b']),
    ]
    assert.deepEqual(
      selectChecks(all, {only: ['mlflow.c']}).map((c) => c.id),
      ['connect.a', 'connect.b', 'mlflow.c'],
    )
    assert.deepEqual(
      selectChecks(all, {only: ['connect']}).map((c) => c.id),
      ['connect.a', 'connect.b'],
      'a category selects its checks',
    )
    const skipped = selectChecks(all, {skip: ['connect.b']})
    assert.deepEqual(
      skipped.map((c) => c.id),
      ['connect.a', 'mlflow.c'],
    )
    const results = await runChecks(skipped, {log: []}, {timeoutMs: 1000})
    assert.match(results[1].detail, /needs connect\.b, which was not run/)
    assert.throws(() => selectChecks(all, {only: ['nope.x']}), /Unknown check ID: nope\.x/)
  })

  it('keeps the exit code contract: config 3, auth 4, other failures 6, warnings 0', () => {
    assert.equal(
      doctorExitCode([
        {id: 'config.server', status: 'fail'},
        {id: 'connect.auth', status: 'fail', exit: 4},
      ]),
      3,
    )
    assert.equal(doctorExitCode([{id: 'connect.access', status: 'fail', exit: 3}]), 3)
    assert.equal(
      doctorExitCode([
        {id: 'connect.auth', status: 'fail', exit: 4},
        {id: 'mlflow.rest', status: 'fail'},
      ]),
      4,
    )
    assert.equal(doctorExitCode([{id: 'mlflow.rest', status: 'fail'}]), 6)
    assert.equal(
      doctorExitCode([
        {id: 'connect.state', status: 'warn'},
        {id: 'x', status: 'skip'},
      ]),
      0,
    )
  })
})

describe('doctor registry', () => {
  it('reports every check of every layer exactly once, reachability first, and lists what each needs', () => {
    const layers = [
      configChecks,
      connectChecks,
      mlflowChecks,
      extensionChecks,
      databaseChecks,
      clientChecks,
      upgradeChecks,
    ]
    const ids = DOCTOR_CHECKS.map((c) => c.id)
    assert.deepEqual(
      [...ids].sort(),
      layers
        .flat()
        .map((c) => c.id)
        .sort(),
    )
    assert.equal(new Set(ids).size, ids.length)
    assert.ok(ids.indexOf('mlflow.health') < ids.indexOf('mlflow.version'))
    assert.ok(ids.indexOf('extension.status') < ids.indexOf('mlflow.version'))
    const dev = DEV_DOCTOR_CHECKS.map((c) => c.id)
    const deployment = [mlflowChecks, extensionChecks, databaseChecks, clientChecks].flat().map((c) => c.id)
    assert.deepEqual([...dev].sort(), [...devChecks.map((c) => c.id), ...deployment].sort())
    // The runner waits for what a check needs wherever it is listed, but it must be listed.
    for (const list of [DOCTOR_CHECKS, DEV_DOCTOR_CHECKS]) {
      const listed = new Set(list.map((c) => c.id))
      for (const definition of list)
        for (const need of definition.needs ?? []) assert.ok(listed.has(need), `${definition.id} needs ${need}`)
    }
  })

  it('fails on an upgrade from this machine that stopped half-way, naming the command that finishes it', async () => {
    const [check] = upgradeChecks
    const intent = {
      v: 1,
      server: 'https://connect.example.com',
      guid: 'g',
      startedAt: 'then',
      updatedAt: 'then',
      step: 'draft-deployed',
      from: {bundleId: '7', mlflowVersion: '2.22.5', revision: 'old'},
      to: {mlflowVersion: '3.17.2', head: 'new'},
      state: {} as UpgradeIntent['state'],
      newBundleId: '8',
    } satisfies UpgradeIntent
    const ctx = (found: UpgradeIntent | undefined) =>
      ({
        facts: {content: {guid: 'g', bundleId: '7'}, ops: {dbRevision: 'new'}},
        probes: {unfinishedUpgrade: async () => found},
      }) as unknown as DoctorContext
    assert.equal((await check.run(ctx(undefined), new Map())).status, 'pass')
    const outcome = await check.run(ctx(intent), new Map())
    assert.equal(outcome.status, 'fail')
    assert.match(outcome.detail, /stopped after its step "draft-deployed".*migrated to new/)
    assert.match(outcome.fix!, /^Run: mlflowctl upgrade resume --guid g \(or mlflowctl upgrade abort --guid g\)$/)
  })
})

describe('units', () => {
  it('parses durations and sizes, and names bad input', () => {
    assert.equal(parseDuration('26h', '--max-backup-age'), 26 * 3_600_000)
    assert.equal(parseDuration('7d', '--max-backup-age'), 7 * 86_400_000)
    assert.equal(parseSize('1GiB', '--min-free'), 1024 ** 3)
    assert.equal(parseSize('500MB', '--min-free'), 500e6)
    assert.equal(parseSize('1024', '--min-free'), 1024)
    assert.throws(
      () => parseDuration('soon', '--max-backup-age'),
      (e: unknown) => e instanceof UsageError && /--max-backup-age/.test(e.message),
    )
    assert.throws(
      () => parseSize('lots', '--min-free'),
      (e: unknown) => e instanceof UsageError && e.code === 'INVALID_SIZE',
    )
  })
})

describe('doctor database layer (fake probes)', () => {
  it('table: a refused login exits 4 like db status and backup; an unreachable database exits 6', async () => {
    const {databaseChecks} = await import('../../../src/core/doctor/checks-database.js')
    const {classifyDatabaseError} = await import('../../../src/core/database-errors.js')
    const {parseDatabaseUrl} = await import('../../../src/core/database-url.js')
    const database = parseDatabaseUrl('postgresql://mlflow:wrong@db.internal:5432/mlflow')
    const connect = databaseChecks.find((c) => c.id === 'database.connect')!
    for (const [driverMessage, exit] of [
      ['password authentication failed for user "mlflow"', 4],
      ['connect ECONNREFUSED 10.0.0.1:5432', undefined],
    ] as const) {
      const probes = {
        probeDatabase: async () => Promise.reject(classifyDatabaseError(database, new Error(driverMessage))),
      }
      const outcome = await connect.run({input: {database}, probes, facts: {}} as never, new Map() as never)
      assert.equal(outcome.status, 'fail', driverMessage)
      assert.equal(outcome.exit, exit, driverMessage)
      assert.equal(
        doctorExitCode([{id: 'database.connect', status: outcome.status, exit: outcome.exit as 4 | undefined}]),
        exit ?? 6,
      )
    }
  })
})

describe('doctor --dev (fake probes)', () => {
  it('replaces the config and Connect layers with dev.instance; a stopped instance fails it with the dev up fix', async () => {
    const {runDoctor} = await import('../../../src/core/doctor/index.js')
    const probes = {now: () => 0} as never
    const input = {
      dev: {bundleDir: '/srv/b', phase: 'failed', logFile: '/x/log'},
      server: {source: 'dev'},
      apiKey: {source: 'dev'},
      guid: {source: 'dev'},
      profile: 'default',
      deep: false,
      maxReplicaLagMs: 60_000,
      minFreeBytes: 0,
      minFreeRatio: 0,
    }
    const result = await runDoctor(probes, input, {timeoutMs: 1000})
    const ids = result.checks.map((c) => c.id)
    assert.ok(!ids.some((id) => id.startsWith('config.') || id.startsWith('connect.')), ids.join())
    const dev = result.checks.find((c) => c.id === 'dev.instance')!
    assert.equal(dev.status, 'fail')
    assert.match(dev.fix!, /mlflowctl dev up \/srv\/b; it failed to start, mlflowctl dev logs \/srv\/b says why/)
    assert.equal(
      result.checks.find((c) => c.id === 'mlflow.health')!.detail,
      'The dev instance runs failed (dev.instance)',
    )
    assert.equal(result.exitCode, 6)
  })
})
