// doctor's /health check reads what the extension's start-up says (startup.py): a refusal for want of a persistent
// data directory names the two ways out, another refusal its reason, a migration in progress is a warning with its
// step; anything else stays "not running".
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {mlflowChecks} from '../../../src/core/doctor/checks-mlflow.js'
import type {DoctorContext} from '../../../src/core/doctor/context.js'

const check = mlflowChecks.find((c) => c.id === 'mlflow.health')!
const view = (fields: Record<string, unknown>) =>
  JSON.stringify({status: 'unavailable', since: '2026-12-07T00:00:00Z', migration: null, error: null, ...fields})

const run = (status: number, body: string) =>
  check.run(
    {
      facts: {content: {contentUrl: 'https://connect.example.com/content/g/'}},
      input: {apiKey: {value: 'k'}, server: {value: 'https://connect.example.com/'}, guid: {value: 'g'}},
      probes: {request: async () => ({status, body})},
    } as unknown as DoctorContext,
    new Map(),
  )

describe('doctor: mlflow.health and the extension start-up', () => {
  it('fails a refusal for want of a data directory with the two ways out', async () => {
    const result = await run(
      503,
      view({
        state: 'refused',
        error: {code: 'DATA_DIR_MISSING', message: 'Local storage needs CONNECT_CONTENT_DATA_DIR'},
      }),
    )
    assert.equal(result.status, 'fail')
    assert.match(result.detail, /refused to start \(DATA_DIR_MISSING\): Local storage needs CONNECT_CONTENT_DATA_DIR/)
    assert.match(result.fix!, /administrator to enable persistent storage .* custom or cloud storage/)
  })

  it('fails another refusal with its reason, and warns while a migration runs', async () => {
    const refused = await run(503, view({state: 'refused', error: {code: 'DB_REVISION_UNKNOWN', message: 'ahead'}}))
    assert.equal(refused.status, 'fail')
    assert.match(refused.detail, /refused to start \(DB_REVISION_UNKNOWN\): ahead/)
    const migrating = await run(
      503,
      view({
        state: 'migrating',
        migration: {
          from: '1b5f0d9ad7c1',
          to: 'dc11669786a5',
          startedAt: '2026-12-07T00:00:01Z',
          step: 3,
          of: 7,
          revision: 'a5b4c3d2e1f0',
          title: 'add composite index on metrics (run_uuid, key, step)',
        },
      }),
    )
    assert.equal(migrating.status, 'warn')
    assert.match(migrating.detail, /is migrating its database schema from 1b5f0d9ad7c1 to dc11669786a5, step 3 of 7/)
    const plain = await run(503, 'The application is not running.')
    assert.equal(plain.status, 'fail')
    assert.match(plain.detail, /not running \(HTTP 503\)/)
  })
})
