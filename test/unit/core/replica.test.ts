// The replica's pure rules (issue 19): SQLite's WAL checksum (vectors from the extension's Python implementation,
// which real WAL files verify in its pytest), which generation and segments a moment needs, and continuity.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  continuityProblem,
  replayPlan,
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
    assert.match((replayPlan([newer], 50) as {error: string}).error, /nothing as old as 50/)
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
    const noIndex: GenerationInfo = {
      ...whole,
      walIndexes: [
        {index: 0, segments: []},
        {index: 2, segments: []},
      ],
    }
    assert.match(continuityProblem(noIndex, [])!, /WAL index 1 of generation g is missing/)
  })
})
