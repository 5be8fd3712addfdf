// The JSON the extension and restore_db.py write, against test/data/shared-shapes.json: the extension's pytest suite
// checks the same examples with its own definitions (replica_layout.py, restore_db.py), so a shape changed on one
// side only fails one of the two suites.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {describe, it} from 'node:test'

import type {z} from 'zod'

import {LOADER_PHASES} from '../../../src/adapters/backup/python-loader.js'
import {metaSchema, segmentSchema, snapshotSchema} from '../../../src/adapters/backup/replica-source.js'
import {checkRetentionPolicy} from '../../../src/core/storage.js'

type Examples = {valid: unknown[]; invalid: unknown[]}
const shapes = JSON.parse(readFileSync(new URL('../../data/shared-shapes.json', import.meta.url), 'utf8')) as {
  replicaMeta: Examples
  snapshot: Examples
  segment: Examples
  phases: Record<string, Examples>
  retentionPolicy: {valid: string[]; invalid: string[]}
}

function check(schema: z.ZodTypeAny, examples: Examples) {
  for (const example of examples.valid) assert.ok(schema.safeParse(example).success, JSON.stringify(example))
  for (const example of examples.invalid) assert.ok(!schema.safeParse(example).success, JSON.stringify(example))
}

describe('shapes shared with the extension and its tools', () => {
  it('the replica layout: mlflowctl-replica.json, snapshot.json and segment sidecars', () => {
    check(metaSchema, shapes.replicaMeta)
    check(snapshotSchema, shapes.snapshot)
    check(segmentSchema, shapes.segment)
  })

  it("restore_db.py's phase lines: the same phases, each payload as the loader reads it", () => {
    assert.deepEqual(Object.keys(shapes.phases).sort(), Object.keys(LOADER_PHASES).sort())
    for (const [name, examples] of Object.entries(shapes.phases))
      check(LOADER_PHASES[name as keyof typeof LOADER_PHASES], examples)
  })

  it('MLFLOWCTL_RETENTION: what deploy accepts is what the extension reads', () => {
    for (const policy of shapes.retentionPolicy.valid) assert.equal(checkRetentionPolicy(policy), policy)
    for (const policy of shapes.retentionPolicy.invalid)
      assert.throws(() => checkRetentionPolicy(policy), /INVALID_RETENTION|--retention/, policy)
  })
})
