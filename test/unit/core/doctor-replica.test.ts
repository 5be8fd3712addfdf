// doctor's replication check: off, refused, standby, behind, a failed last round, current.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {extensionChecks} from '../../../src/core/doctor/checks-extension.js'
import type {DoctorContext} from '../../../src/core/doctor/context.js'
import type {OpsStatus} from '../../../src/core/extension-contract.js'

const check = extensionChecks.find((c) => c.id === 'extension.replica')!

const replica = (fields: Partial<NonNullable<OpsStatus['replica']>>): NonNullable<OpsStatus['replica']> => ({
  url: '/srv/replica',
  role: 'replicating',
  generation: '20261204T100000Z-abcdef',
  walIndex: 0,
  offset: 4128,
  lastShippedAt: 1,
  lastRoundAt: 1,
  shippedFrames: 10,
  lagSeconds: 0.8,
  lastError: null,
  refusedBecause: null,
  ...fields,
})

const NOW = Date.UTC(2026, 11, 6, 12)
const run = (status: OpsStatus['replica'], maxReplicaLagMs = 60_000) =>
  check.run(
    {facts: {ops: {replica: status}}, input: {maxReplicaLagMs}, probes: {now: () => NOW}} as unknown as DoctorContext,
    new Map(),
  )

describe('doctor: extension.replica', () => {
  it('passes when replication is off or current', async () => {
    assert.deepEqual(
      [(await run(null)).status, (await run(null)).detail],
      ['pass', 'off (MLFLOWCTL_REPLICA_URL is not set)'],
    )
    const current = await run(replica({}))
    assert.equal(current.status, 'pass')
    assert.match(current.detail, /replicating to \/srv\/replica, generation 20261204T100000Z-abcdef, 0\.8 s behind/)
  })
  it('fails when refused, with the reason and a fix', async () => {
    const refused = await run(replica({role: 'refused', refusedBecause: 's3:// replicas need boto3'}))
    assert.equal(refused.status, 'fail')
    assert.match(refused.detail, /refused: s3:\/\/ replicas need boto3/)
    assert.match(refused.fix!, /init --replica-store/)
  })
  it('warns when it falls behind the threshold, has no round yet, stands by, or its last round failed', async () => {
    const behind = await run(
      replica({lagSeconds: 95, lastError: 'OSError: [Errno 28] No space left on device'}),
      30_000,
    )
    assert.equal(behind.status, 'warn')
    assert.match(behind.detail, /95 s behind, over 30 s; last error: OSError/)
    assert.equal((await run(replica({lagSeconds: null}))).status, 'warn')
    assert.match((await run(replica({role: 'standby'}))).fix!, /max processes 1/)
    const failedRound = await run(replica({lastError: 'TimeoutError: the bucket did not answer'}))
    assert.equal(failedRound.status, 'warn')
    assert.match(failedRound.detail, /last round failed: TimeoutError/)
  })
  it('fails on a stalled replica, and warns for a day after a notice', async () => {
    const stalled = await run(
      replica({
        stalledSeconds: 42,
        lastError: 'the replica has not answered for 42 s (a round is still waiting on it)',
      }),
    )
    assert.equal(stalled.status, 'fail', 'a frozen replica is not only lag')
    assert.match(stalled.detail, /is stalled: the replica has not answered for 42 s/)
    assert.match(stalled.fix!, /MLFLOWCTL_REPLICA_MAX_WAL/)
    const notice =
      'generation 20261204T100000Z-abcdef vanished from the replica (deleted by hand or by a lifecycle rule): a new one starts'
    const recent = await run(replica({lastNotice: notice, lastNoticeAt: NOW / 1000 - 3600}))
    assert.equal(recent.status, 'warn')
    assert.match(recent.detail, /note: generation .* vanished/)
    assert.equal((await run(replica({lastNotice: notice, lastNoticeAt: NOW / 1000 - 2 * 86_400}))).status, 'pass')
  })
})
