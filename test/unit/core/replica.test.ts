// The replica's pure rules: SQLite's WAL checksum (vectors from the extension's Python implementation,
// which real WAL files verify in its pytest), which generation and segments a moment needs, and continuity.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  continuityProblem,
  replayPlan,
  summarizeReplica,
  walChecksum,
  type GenerationInfo,
  type SegmentInfo,
} from '../../../src/core/replica.js'

const segment = (walIndex: number, start: number, end: number, commitTime: number, extra: Partial<SegmentInfo> = {}) =>
  ({path: `wal/${walIndex}/${start}`, walIndex, start, end, commitTime, ...extra}) as SegmentInfo

const generation = (id: string, takenAt: number, indexes: SegmentInfo[][], offset = 32): GenerationInfo => ({
  id,
  snapshot: {sha256: '', bytes: 0, takenAt, offset},
  walIndexes: indexes.map((segments, index) => ({index, segments})),
})

describe('replica rules', () => {
  it('computes SQLite WAL checksums in both byte orders, continuing a chain', () => {
    const data = Uint8Array.from({length: 64}, (_, i) => i)
    assert.deepEqual(walChecksum(data, true, [0, 0]), [1250741968, 1467521361])
    assert.deepEqual(walChecksum(data, false, [0, 0]), [79855644, 2793759756])
    assert.deepEqual(walChecksum(data, true, [5, 7]), [1250751927, 1467537475])
  })
  it('picks the newest generation whose snapshot is not after the moment, and its segments up to it', () => {
    const older = generation('20261204T100000Z-aaaaaa', 100, [[segment(0, 32, 64, 110), segment(0, 64, 96, 120)]])
    const newer = generation('20261204T110000Z-bbbbbb', 200, [[segment(0, 32, 64, 210)]])
    assert.equal((replayPlan([newer, older], undefined) as {generation: GenerationInfo}).generation.id, newer.id)
    const at115 = replayPlan([newer, older], 115) as {generation: GenerationInfo; segments: SegmentInfo[]}
    assert.equal(at115.generation.id, older.id)
    assert.deepEqual(
      at115.segments.map((s) => s.start),
      [32],
    )
    assert.match(
      (replayPlan([newer], 50) as {error: string}).error,
      /nothing as old as 1970-01-01T00:00:50\.000Z; the oldest moment it restores is 1970-01-01T00:03:20\.000Z/,
    )
    assert.match((replayPlan([], undefined) as {error: string}).error, /no generation/)
  })
  it('finds a missing segment, a missing WAL index and a lost last segment of an index', () => {
    const whole = generation('g', 0, [[segment(0, 32, 64, 1)], [segment(1, 32, 96, 2, {previousIndexEnd: 64})]])
    assert.equal(
      continuityProblem(
        whole,
        whole.walIndexes.flatMap((i) => i.segments),
      ),
      undefined,
    )
    const gap = generation('g', 0, [[segment(0, 32, 64, 1), segment(0, 96, 128, 2)]])
    assert.match(continuityProblem(gap, gap.walIndexes[0].segments)!, /missing before wal\/0\/96/)
    const lostLast = generation('g', 0, [[segment(0, 32, 64, 1)], [segment(1, 32, 96, 2, {previousIndexEnd: 96})]])
    assert.match(
      continuityProblem(
        lostLast,
        lostLast.walIndexes.flatMap((i) => i.segments),
      )!,
      /missing at the end of WAL index 0/,
    )
    const skipped = [segment(0, 32, 64, 1), segment(2, 32, 96, 2, {previousIndexEnd: 64})]
    assert.match(continuityProblem(whole, skipped)!, /WAL index 1 of generation g is missing/)
    // Index 0 may hold nothing: the WAL restarted before anything was shipped after the snapshot.
    const emptyFirst = generation('g', 0, [[], [segment(1, 32, 96, 2, {previousIndexEnd: 4128})]], 4128)
    assert.equal(continuityProblem(emptyFirst, emptyFirst.walIndexes[1].segments), undefined)
    const wrongEnd = [segment(1, 32, 96, 2, {previousIndexEnd: 32})]
    assert.match(continuityProblem(emptyFirst, wrongEnd)!, /missing at the end of WAL index 0 \(it ended at 4128/)
  })
  it('orders generations by their snapshot, not their ID, and summarizes the window a restore can reach', () => {
    // Begun in the same second: the IDs sort by their random part, the snapshots by time.
    const first = generation('20261204T100000Z-ffffff', 100.2, [[segment(0, 32, 64, 101), segment(0, 64, 96, 130)]])
    const second = generation('20261204T100000Z-000000', 100.7, [[segment(0, 32, 64, 140)]])
    assert.equal((replayPlan([first, second], undefined) as {generation: GenerationInfo}).generation.id, second.id)
    const summary = summarizeReplica(
      [second, first],
      {generations: {[first.id]: 1000, [second.id]: 500}, artifacts: {files: 2, bytes: 30}},
      150,
    )
    assert.deepEqual(
      summary.generations.map((g) => [g.id, g.segments, g.bytes]),
      [
        [first.id, 2, 1000],
        [second.id, 1, 500],
      ],
    )
    assert.deepEqual(summary.window, {from: new Date(100200).toISOString(), to: new Date(140000).toISOString()})
    assert.equal(summary.bytes, 1530)
    assert.equal(summary.newestAgeSeconds, 10)
    assert.equal(summarizeReplica([], {generations: {}, artifacts: {files: 0, bytes: 0}}, 1).window, null)
  })
  it('prefers a merged segment to what it merged, and cuts it at the last commit point not after the moment', () => {
    const points = [
      {end: 64, commitTime: 10, chainAfter: [1, 1] as [number, number]},
      {end: 96, commitTime: 20, chainAfter: [2, 2] as [number, number]},
      {end: 128, commitTime: 30, chainAfter: [3, 3] as [number, number]},
    ]
    const merged = segment(0, 32, 128, 30, {points})
    const leftover = segment(0, 32, 64, 10) // its compaction was cut short before it was deleted
    const after = segment(0, 128, 160, 40)
    const g = generation('g', 0, [[leftover, merged, after]])
    const latest = replayPlan([g], undefined) as {segments: SegmentInfo[]}
    assert.deepEqual(
      latest.segments.map((s) => [s.start, s.end, s.cut?.end]),
      [
        [32, 128, undefined],
        [128, 160, undefined],
      ],
    )
    assert.equal(continuityProblem(g, latest.segments), undefined)
    const at25 = replayPlan([g], 25) as {segments: SegmentInfo[]}
    assert.deepEqual(
      at25.segments.map((s) => [s.start, s.cut?.end]),
      [[32, 96]],
    )
    assert.equal(continuityProblem(g, at25.segments), undefined)
    assert.deepEqual((replayPlan([g], 5) as {segments: SegmentInfo[]}).segments, [])
  })
})

describe('moments as they are printed and given', async () => {
  const {momentText} = await import('../../../src/core/replica.js')
  const {parseMoment, parseRestoreSource} = await import('../../../src/core/backup/restore.js')
  const now = new Date('2026-12-06T12:00:00Z')
  it('accepts the window start that replica status prints, although the snapshot is a fraction of a millisecond later', () => {
    const takenAt = 1_765_000_000.1239 // what time.time() gives: finer than a millisecond
    const g = generation('g', takenAt, [[segment(0, 32, 64, takenAt + 0.00005)]])
    const printed = summarizeReplica([g], {generations: {}, artifacts: {files: 0, bytes: 0}}, takenAt + 1).window!.from
    assert.equal(printed, momentText(takenAt))
    const plan = replayPlan([g], parseMoment(printed, now)) as {generation: GenerationInfo; segments: SegmentInfo[]}
    assert.equal(plan.generation.id, 'g')
    // The segment committed within the same millisecond belongs to the moment too.
    assert.equal(plan.segments.length, 1)
    // A millisecond earlier is before the replica, and the message names the moment to give instead.
    const earlier = replayPlan([g], parseMoment(momentText(takenAt - 0.001), now)) as {error: string}
    assert.match(earlier.error, new RegExp(`the oldest moment it restores is ${printed.replace(/\./g, '\\.')}`))
  })
  it('requires a zone, so that TZ never changes the moment, and takes offsets', () => {
    assert.equal(parseMoment('2026-12-04T10:15:00Z', now), Date.UTC(2026, 11, 4, 10, 15) / 1000)
    assert.equal(parseMoment('2026-12-04T11:15:00+01:00', now), Date.UTC(2026, 11, 4, 10, 15) / 1000)
    assert.equal(parseMoment('2026-12-04T10:15:00.250z', now), Date.UTC(2026, 11, 4, 10, 15, 0, 250) / 1000)
    for (const noZone of ['2026-12-04T10:15:00', '2026-12-04 10:15:00', '2026-12-04'])
      assert.throws(() => parseMoment(noZone, now), {code: 'INVALID_TIME', message: /with a zone/})
  })
  it('refuses numbers read as years and moments in the future', () => {
    for (const number of ['0', '1', '1765000000'])
      assert.throws(() => parseMoment(number, now), {code: 'INVALID_TIME', message: /not an ISO 8601 time/})
    assert.throws(() => parseMoment('2026-12-06T12:00:01Z', now), {code: 'INVALID_TIME', message: /in the future/})
    for (const impossible of [
      '2026-02-30T10:00:00Z',
      '2026-13-01T10:00:00Z',
      '2026-11-30T24:00:00Z',
      '2026-11-30T10:60:00Z',
    ])
      assert.throws(() => parseMoment(impossible, now), {code: 'INVALID_TIME', message: /not a valid time/})
    assert.throws(() => parseRestoreSource(undefined, '/r', '1', (p) => p, now), {code: 'INVALID_TIME'})
    assert.deepEqual(
      parseRestoreSource(undefined, '/r', '2026-12-06T11:00:00Z', (p) => p, now),
      {
        kind: 'replica',
        dir: '/r',
        at: Date.UTC(2026, 11, 6, 11) / 1000,
      },
    )
  })
})

describe('a replica chained to its database', async () => {
  const {foreignProblem} = await import('../../../src/core/replica.js')
  const salts: [number, number] = [7, 99]
  const chained = (
    walIndex: number,
    start: number,
    end: number,
    before: [number, number],
    after: [number, number],
    s = salts,
  ) => segment(walIndex, start, end, 1, {salts: s, chainBefore: before, chainAfter: after, identity: 'db-1'})
  const withSnapshot = (segments: SegmentInfo[][]) => {
    const g = generation('g', 0, segments, 64)
    g.snapshot = {...g.snapshot, salts, chain: [1, 1], identity: 'db-1'}
    return g
  }

  it('continues the snapshot, then each segment, by salts and checksum chain; a restart adds one to salt-1', () => {
    const first = chained(0, 64, 96, [1, 1], [2, 2])
    const second = chained(0, 96, 128, [2, 2], [3, 3])
    const restarted = chained(1, 32, 64, [9, 9], [4, 4], [8, 5])
    const g = withSnapshot([[first, second], [{...restarted, previousIndexEnd: 128}]])
    assert.equal(continuityProblem(g, [first, second, {...restarted, previousIndexEnd: 128}]), undefined)
    // Given a segment of the same offsets from another database (its chain starts elsewhere)
    const spliced = chained(0, 96, 128, [5, 5], [3, 3])
    assert.match(continuityProblem(g, [first, spliced])!, /wal\/0\/96 does not continue what came before it/)
    assert.match(continuityProblem(g, [chained(0, 64, 96, [6, 6], [2, 2])])!, /does not continue/, 'nor the snapshot')
    const otherWal = {...chained(1, 32, 64, [9, 9], [4, 4], [40, 5]), previousIndexEnd: 128}
    assert.match(continuityProblem(g, [first, second, otherWal])!, /does not follow WAL index 0 \(salt-1 40 after 7\)/)
  })

  it('names a generation or segment of another database, and passes replicas made before identities', () => {
    const mine = chained(0, 64, 96, [1, 1], [2, 2])
    const g = withSnapshot([[mine]])
    assert.equal(foreignProblem('db-1', g, [mine]), undefined)
    assert.match(
      foreignProblem('db-2', g, [mine])!,
      /generation g belongs to another database \(identity db-1; the replica's is db-2\)/,
    )
    assert.match(foreignProblem('db-1', g, [{...mine, identity: 'db-2'}])!, /g\/wal\/0\/64 belongs to another database/)
    const old = generation('old', 0, [[segment(0, 32, 64, 1)]])
    assert.equal(foreignProblem(undefined, old, old.walIndexes[0].segments), undefined)
  })
})
