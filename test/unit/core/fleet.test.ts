import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  discoverFleet,
  fleetRow,
  mapBounded,
  memberRepository,
  outcomeWithoutRunning,
  schemaFromStatusError,
  summariseFleet,
  worstExitCode,
  type FleetListing,
} from '../../../src/core/fleet.js'
import {previousSuccess, renderMetricsFile} from '../../../src/core/metrics-file.js'

const listing: FleetListing[] = [
  {guid: 'a', name: 'mine', app_mode: 'python-fastapi', app_role: 'owner', bundle_id: '1', owner: {username: 'me'}},
  {guid: 'b', name: 'shiny-app', app_mode: 'python-shiny', app_role: 'owner', bundle_id: '2'},
  {guid: 'c', name: 'other-api', app_mode: 'python-api', app_role: 'editor', bundle_id: '3'},
  {guid: 'd', name: 'viewed', app_mode: 'python-api', app_role: 'viewer', bundle_id: '4', tags: [{name: 'mlflowctl'}]},
  {guid: 'e', name: 'viewed-untagged', app_mode: 'python-api', app_role: 'viewer', bundle_id: '5'},
  {
    guid: 'f',
    name: 'unreadable',
    app_mode: 'python-api',
    app_role: 'editor',
    bundle_id: '6',
    tags: [{name: 'mlflowctl'}],
  },
]

describe('fleet discovery', () => {
  it('recognises a bundle with mlflowctl.json, or the tag when the bundle cannot be read; nothing else', async () => {
    const read: string[] = []
    const members = await discoverFleet(
      {
        listContent: async () => listing,
        bundleInfo: async (guid) => {
          read.push(guid)
          if (guid === 'f') throw new Error('403')
          return guid === 'a' ? {mlflowVersion: '3.17.2', storage: 'local'} : undefined
        },
      },
      {jobs: 2},
    )
    assert.deepEqual(
      members.map((m) => [m.guid, m.access, m.recognisedBy]),
      [
        ['a', 'manage', 'bundle'],
        ['d', 'view', 'tag'],
        ['f', 'manage', 'tag'],
      ],
    )
    // Viewers' bundles are never asked for (Connect refuses them); other app modes are never read.
    assert.deepEqual(read.sort(), ['a', 'c', 'f'])
    assert.equal(members[0].owner, 'me')
  })

  it('keeps a managed Python API whose bundle cannot be read, as unverified; an administrator manages everything', async () => {
    const members = await discoverFleet(
      {
        listContent: async () => [
          {guid: 'x', name: 'flaky', app_mode: 'python-api', app_role: 'owner', bundle_id: '7'},
          {guid: 'y', name: 'not-in-my-acl', app_mode: 'python-api', app_role: 'none', bundle_id: '8'},
        ],
        bundleInfo: async (guid) => {
          if (guid === 'x') throw new Error('HTTP 502')
          return {mlflowVersion: '3.17.2'}
        },
      },
      {jobs: 2, administrator: true},
    )
    assert.deepEqual(
      members.map((m) => [m.guid, m.recognisedBy, m.problem]),
      [
        ['x', 'unverified', 'its bundle could not be read: HTTP 502'],
        ['y', 'bundle', undefined],
      ],
    )
    assert.deepEqual(outcomeWithoutRunning(members[0])?.error?.code, 'FLEET_MEMBER_UNREADABLE')
    assert.equal(outcomeWithoutRunning(members[0])?.exitCode, 5)
    assert.equal(outcomeWithoutRunning(members[1]), undefined)
    assert.equal(
      outcomeWithoutRunning({guid: 'v', name: 'v', access: 'view', recognisedBy: 'tag'})?.skipped,
      'the key may only view it',
    )
  })

  it('refuses a --guid the key cannot see, or that is not an MLflow extension', async () => {
    const ports = {listContent: async () => listing, bundleInfo: async () => undefined}
    await assert.rejects(discoverFleet(ports, {jobs: 1, guids: ['nope']}), {code: 'CONTENT_NOT_FOUND'})
    await assert.rejects(discoverFleet(ports, {jobs: 1, guids: ['b']}), {code: 'NOT_AN_MLFLOWCTL_BUNDLE'})
  })

  it('keeps to --guid', async () => {
    const members = await discoverFleet(
      {listContent: async () => listing, bundleInfo: async () => ({mlflowVersion: '3.0.1'})},
      {jobs: 1, guids: ['c']},
    )
    assert.deepEqual(
      members.map((m) => m.guid),
      ['c'],
    )
  })
})

describe('fleet outcomes', () => {
  it('runs at most `jobs` at once, in input order', async () => {
    let running = 0
    let most = 0
    const results = await mapBounded([5, 1, 4, 2, 3], 2, async (n) => {
      running++
      most = Math.max(most, running)
      await new Promise((resolve) => setImmediate(resolve))
      running--
      return n * 10
    })
    assert.deepEqual(results, [50, 10, 40, 20, 30])
    assert.equal(most, 2)
  })

  it('exits with the worst code: a refused key outranks a failed check, a crash outranks both', () => {
    assert.equal(worstExitCode([]), 0)
    assert.equal(worstExitCode([0, 6, 0]), 6)
    assert.equal(worstExitCode([6, 4, 5]), 4)
    assert.equal(worstExitCode([4, 1]), 1)
    const summary = summariseFleet([
      {guid: 'a', name: 'a', exitCode: 0, seconds: 1},
      {guid: 'b', name: 'b', exitCode: 6, seconds: 1, error: {code: 'DOCTOR_CHECKS_FAILED', message: 'x'}},
    ])
    assert.deepEqual([summary.exitCode, summary.failed], [6, ['b']])
  })

  it('gives each member a sub-path of the repository', () => {
    assert.equal(memberRepository('s3://bucket/prefix/', 'g'), 's3://bucket/prefix/g')
    assert.equal(memberRepository('/backups', 'g'), '/backups/g')
  })

  it('reads a refused start for what it says of the schema', () => {
    assert.equal(
      schemaFromStatusError(
        'The MLflow extension refused to start: The database is at schema revision 75868b020152 and MLflow 3.17.2 expects dc11669786a5 (1 pending migrations)',
      ),
      'behind (75868b020152 → dc11669786a5), start refused',
    )
    assert.equal(schemaFromStatusError('HTTP 503'), 'unknown')
    const row = fleetRow(
      {
        guid: 'a',
        name: 'a',
        access: 'manage',
        recognisedBy: 'bundle',
        bundle: {mlflowVersion: '3.1.0', storage: 'local'},
      },
      {
        status: {schemaState: 'current', mlflowVersion: '3.1.0', replica: {lagSeconds: 2.5}},
        history: [
          {v: 1, time: '2026-12-01T00:00:00Z', action: 'backup', result: 'ok', server: 's', guid: 'a'},
          {v: 1, time: '2026-12-02T00:00:00Z', action: 'backup', result: 'failed', server: 's', guid: 'a'},
          {v: 1, time: '2026-12-03T00:00:00Z', action: 'backup', result: 'ok', server: 's', guid: 'other'},
        ],
      },
    )
    assert.deepEqual([row.schema, row.lastBackup, row.replicaLagSeconds], ['current', '2026-12-01T00:00:00Z', 2.5])
    // A snapshot another machine's backup took, newer than this ledger's, is the last backup.
    const elsewhere = fleetRow(
      {guid: 'a', name: 'a', access: 'manage', recognisedBy: 'bundle'},
      {status: {schemaState: 'current', lastSnapshot: {at: '2026-12-05T10:00:00+00:00'}}, history: []},
    )
    assert.equal(elsewhere.lastBackup, '2026-12-05T10:00:00.000Z')
  })
})

describe('metrics textfile', () => {
  const run = {command: 'backup create', target: 'connect:g', startedAt: 1_000_000, finishedAt: 1_012_500}

  it('records a success, and keeps its time through later failures of the same job', () => {
    const ok = renderMetricsFile({...run, exitCode: 0, bytes: 4096})
    assert.match(
      ok,
      /^mlflowctl_command_last_success_timestamp_seconds\{command="backup create",target="connect:g"\} 1012\.5$/m,
    )
    assert.match(ok, /^mlflowctl_command_duration_seconds\{[^}]*\} 12\.5$/m)
    assert.match(ok, /^mlflowctl_command_bytes\{[^}]*\} 4096$/m)
    const failed = renderMetricsFile({...run, exitCode: 5, startedAt: 2_000_000, finishedAt: 2_000_100}, ok)
    assert.equal(previousSuccess(failed, run), 1012.5)
    assert.match(failed, /^mlflowctl_command_exit_code\{[^}]*\} 5$/m)
    assert.match(failed, /^mlflowctl_command_success\{[^}]*\} 0$/m)
    assert.doesNotMatch(failed, /mlflowctl_command_bytes/)
    // Another job's file does not lend its success.
    assert.equal(previousSuccess(ok, {command: 'backup create', target: 'connect:other'}), undefined)
  })

  it('escapes label values and ends with a newline', () => {
    const text = renderMetricsFile({...run, target: 'a"b\\c', exitCode: 0, members: [{target: 'g1', exitCode: 4}]})
    assert.match(text, /target="a\\"b\\\\c"/)
    assert.match(text, /mlflowctl_command_member_exit_code\{[^}]*guid="g1"\} 4/)
    assert.ok(text.endsWith('\n'))
  })
})
