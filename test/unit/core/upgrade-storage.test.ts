import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  checkBackupRevision,
  externalDatabase,
  upgradeBackupSource,
  upgradeRestoreTarget,
} from '../../../src/core/upgrade-storage.js'
import type {MlflowctlError} from '../../../src/errors.js'

const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
const live = (status: {storageMode: string; backendStore?: string; dbRevision?: string | null}) => ({
  guid: GUID,
  status: {mlflowVersion: '2.22.5', schemaState: 'current', dialect: 'postgresql', dbRevision: null, ...status},
})
const codeOf = (action: () => unknown): string => {
  try {
    action()
    return 'ok'
  } catch (error) {
    return (error as MlflowctlError).code
  }
}

describe('upgrade storage rules', () => {
  const pg = live({storageMode: 'custom', backendStore: 'postgresql+psycopg://mlflow:***@db.internal:5432/mlflow'})

  it('local storage needs no --db; external storage needs the database the extension serves', () => {
    assert.equal(externalDatabase(live({storageMode: 'local'}), undefined), undefined)
    assert.equal(
      codeOf(() => externalDatabase(pg, undefined)),
      'DATABASE_URL_REQUIRED',
    )
    assert.equal(
      codeOf(() => externalDatabase(pg, 'mssql://sa:pw@db.internal/mlflow')),
      'ENGINE_NOT_SUPPORTED',
    )
    // Same host, port and database (the served URL has no password and another driver name): accepted.
    assert.equal(externalDatabase(pg, 'postgresql://mlflow:secret@db.internal/mlflow')!.engine, 'postgresql')
    for (const other of [
      'postgresql://mlflow:secret@db.other/mlflow',
      'postgresql://mlflow:secret@db.internal:5433/mlflow',
      'postgresql://mlflow:secret@db.internal/mlflow_other',
    ]) {
      assert.equal(
        codeOf(() => externalDatabase(pg, other)),
        'DATABASE_MISMATCH',
        other,
      )
    }
  })

  it('backs up the snapshot with artifacts for local storage, the database alone for external storage, and restores into the same place', () => {
    assert.deepEqual(upgradeBackupSource({guid: GUID}, undefined, undefined), {
      source: {kind: 'connect', guid: GUID},
      artifacts: 'all',
    })
    const url = 'postgresql://mlflow:secret@db.internal/mlflow'
    const database = externalDatabase(pg, url)
    const external = upgradeBackupSource({guid: GUID}, database, url)
    assert.equal(external.artifacts, 'none', 'an external artifact store is not part of the upgrade backup')
    assert.equal(external.source.kind, 'postgresql')
    assert.deepEqual(upgradeRestoreTarget({guid: GUID}, database, url), external.source)
  })

  it('refuses a backup whose revision is not the live one', () => {
    assert.equal(
      codeOf(() => checkBackupRevision({id: 'b1', revision: 'abc'}, live({storageMode: 'local', dbRevision: 'abc'}))),
      'ok',
    )
    assert.equal(
      codeOf(() => checkBackupRevision({id: 'b1', revision: 'abc'}, live({storageMode: 'local', dbRevision: 'def'}))),
      'BACKUP_OTHER_REVISION',
    )
    assert.equal(
      codeOf(() => checkBackupRevision({id: 'b1', revision: null}, live({storageMode: 'local', dbRevision: null}))),
      'ok',
      'an empty database backs up as empty',
    )
  })
})
