import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {showBackupList, showRestored, showVerified} from '../../../src/output/views/backup.js'
import {showHistory} from '../../../src/output/views/history.js'

describe('human views', () => {
  it('backup list: a table, or "No backups."', () => {
    assert.equal(showBackupList([]), 'No backups.')
    const text = showBackupList([
      {
        id: 'b1',
        createdAt: '2026-12-04T00:00:00Z',
        bytes: 2048,
        rows: 5,
        artifactFiles: 2,
        verifiedAt: null,
        kind: 'archive',
      },
      {
        id: 's1',
        createdAt: '2026-12-05T00:00:00Z',
        bytes: 1024,
        rows: 5,
        artifactFiles: 2,
        verifiedAt: null,
        kind: 'snapshot',
      },
    ])
    assert.match(text, /^ID\s+KIND\s+CREATED\s+SIZE/m)
    assert.match(text, /b1\s+archive\s+2026-12-04T00:00:00Z\s+2(\.0)? KiB\s+5\s+2\s+no/)
    // A snapshot's size is what it added; the rest it shares.
    assert.match(text, /s1\s+snapshot\s+2026-12-05T00:00:00Z\s+\+1(\.0)? KiB/)
  })

  it('restore names the safety backup only when one was taken; verify adds the deep line only for --deep', () => {
    const restored = {backupId: 'b1', target: '/srv/app', tables: 3, rows: 9, artifactFiles: 1, revision: 'r1'} as any
    assert.doesNotMatch(showRestored(restored), /Safety backup/)
    assert.match(showRestored({...restored, safetyBackup: 's1'}), /\nSafety backup of the previous data: s1$/)
    assert.equal(showVerified({id: 'b1', files: [1, 2], alembicRevision: null}), 'Intact: b1, 2 files, revision none.')
    const deep = {
      id: 'b1',
      revision: 'r',
      tables: 3,
      rows: 9,
      missing: [],
      orphans: [],
      unchecked: 1,
      uncheckedReferences: ['model m version 1: s3://other/model'],
    }
    assert.match(
      showVerified({id: 'b1', files: [1], alembicRevision: 'r'}, deep),
      /1 references outside the backed-up store not checked:\n {2}model m version 1: s3:\/\/other\/model$/,
    )
  })

  it('history: one row per event, dashes for what an event lacks', () => {
    const text = showHistory([{v: 1, time: 't', action: 'deploy', result: 'ok'} as any])
    assert.match(text.split('\n')[1], /^t\s+deploy\s+ok\s+-\s+-\s+-\s+-\s+-$/)
  })
})
