import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {backupId, compareWithManifest, decodeValue, describeProblem, encodeValue, invalidManifest, unsafeEntryName, type BackupManifest} from '../../../src/core/backup/format.js'
import {selectRetention, type RetentionCandidate} from '../../../src/core/backup/retention.js'

const sha = (c: string) => c.repeat(64)

describe('backup format', () => {
  it('refuses tar entry names that escape or do not belong', () => {
    for (const [name, why] of [['/etc/passwd', /absolute/], ['artifacts/../../x', /\.\./], ['db\\x.jsonl', /backslash/], ['other/file', /not under db\/ or artifacts\//], ['C:/x', /absolute/]] as const) {
      assert.match(unsafeEntryName(name) ?? 'accepted', why, name)
    }
    for (const name of ['manifest.json', 'db/runs.jsonl', 'artifacts/1/abc/artifacts/model.pkl']) assert.equal(unsafeEntryName(name), undefined)
  })

  it('names every difference between an archive and its manifest', () => {
    const manifest = {files: [{path: 'db/a.jsonl', size: 3, sha256: sha('a')}, {path: 'db/b.jsonl', size: 3, sha256: sha('b')}, {path: 'db/c.jsonl', size: 3, sha256: sha('c')}]} as BackupManifest
    const seen = new Map([['db/a.jsonl', {size: 3, sha256: sha('a')}], ['db/b.jsonl', {size: 4, sha256: sha('b')}], ['db/c.jsonl', {size: 3, sha256: sha('d')}], ['db/x.jsonl', {size: 1, sha256: sha('e')}]])
    assert.deepEqual(compareWithManifest(manifest, seen).map(describeProblem), [
      'db/b.jsonl has 4 bytes, the manifest says 3',
      'db/c.jsonl does not match its SHA-256 in the manifest',
      'db/x.jsonl is in the archive but not in the manifest',
    ])
    assert.deepEqual(compareWithManifest({files: [{path: 'db/z.jsonl', size: 1, sha256: sha('z')}]} as BackupManifest, new Map()).map(describeProblem), ['db/z.jsonl is listed in the manifest but missing from the archive'])
  })

  it('refuses a manifest of another format or with an unsafe path', () => {
    assert.match(invalidManifest({format: 2, id: 'x', createdAt: 'y', files: []})!, /format 2 is not supported/)
    assert.match(invalidManifest({format: 1, id: 'x', createdAt: 'y', files: [{path: '../x', size: 1, sha256: sha('a')}]})!, /\.\./)
    assert.equal(invalidManifest({format: 1, id: 'x', createdAt: 'y', files: [{path: 'db/a.jsonl', size: 1, sha256: sha('a')}]}), undefined)
  })

  it('encodes values JSON cannot hold and decodes them back exactly', () => {
    const values = [null, 1, 1.5, 'text', Buffer.from([0, 255, 7]), 2n ** 62n, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]
    const roundTrip = JSON.parse(JSON.stringify(values.map(encodeValue))).map(decodeValue)
    assert.equal(roundTrip[5], 2n ** 62n)
    assert.ok(Number.isNaN(roundTrip[6]))
    assert.equal(roundTrip[7], Infinity)
    assert.equal(roundTrip[8], -Infinity)
    assert.deepEqual(roundTrip[4], Buffer.from([0, 255, 7]))
    assert.deepEqual(roundTrip.slice(0, 4), [null, 1, 1.5, 'text'])
    assert.equal(encodeValue(42n), 42, 'safe bigints stay plain numbers')
  })

  it('makes IDs that sort by time', () => {
    assert.equal(backupId(new Date('2026-11-28T06:15:00.123Z'), 'ab12cd'), '20261128T061500Z-ab12cd')
  })
})

describe('backup retention', () => {
  const at = (iso: string, verified = true): RetentionCandidate => ({id: iso, createdAt: iso, verified})
  const kept = (backups: RetentionCandidate[], policy: Parameters<typeof selectRetention>[1]) => selectRetention(backups, policy).filter((d) => d.keep).map((d) => d.id)
  const days = ['2026-11-28T06:00:00Z', '2026-11-28T01:00:00Z', '2026-11-27T06:00:00Z', '2026-11-26T06:00:00Z', '2026-11-20T06:00:00Z', '2026-11-02T06:00:00Z', '2026-10-15T06:00:00Z', '2026-09-01T06:00:00Z'].map((d) => at(d))

  for (const [name, policy, expected] of [
    ['keep-last 2', {keepLast: 2}, ['2026-11-28T06:00:00Z', '2026-11-28T01:00:00Z']],
    ['keep-daily 3 takes the newest of each day', {keepDaily: 3}, ['2026-11-28T06:00:00Z', '2026-11-27T06:00:00Z', '2026-11-26T06:00:00Z']],
    ['keep-weekly 2 (ISO weeks, Monday first)', {keepWeekly: 2}, ['2026-11-28T06:00:00Z', '2026-11-20T06:00:00Z']],
    ['keep-monthly 3', {keepMonthly: 3}, ['2026-11-28T06:00:00Z', '2026-10-15T06:00:00Z', '2026-09-01T06:00:00Z']],
    ['policies combine', {keepLast: 1, keepMonthly: 2}, ['2026-11-28T06:00:00Z', '2026-10-15T06:00:00Z']],
  ] as const) {
    it(name, () => assert.deepEqual(kept(days, policy), expected))
  }

  it('never drops the newest verified backup, even when the policy would', () => {
    const backups = [at('2026-11-28T06:00:00Z', false), at('2026-11-27T06:00:00Z', true), at('2026-11-26T06:00:00Z', true)]
    const decisions = selectRetention(backups, {keepLast: 1})
    assert.deepEqual(decisions.filter((d) => d.keep).map((d) => d.id), ['2026-11-28T06:00:00Z', '2026-11-27T06:00:00Z'])
    assert.deepEqual(decisions[1].reasons, ['newest verified'])
  })
})
