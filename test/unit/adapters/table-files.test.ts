import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import {readReferences} from '../../../src/adapters/backup/artifact-source.js'
import {rewriteLocationsInTableFiles} from '../../../src/adapters/backup/rewrite-locations.js'
import {locationRewriter} from '../../../src/core/backup/artifact-locations.js'

/** A PostgreSQL source's table files (format 2): schema.json and COPY text. */
function copyTextDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'table-files-'))
  const schema = {
    engine: 'postgresql',
    tables: [
      {
        name: 'runs',
        columns: [
          {name: 'run_uuid', type: 'character varying'},
          {name: 'artifact_uri', type: 'character varying'},
        ],
      },
      {
        name: 'trace_tags',
        columns: [
          {name: 'key', type: 'character varying'},
          {name: 'value', type: 'character varying'},
        ],
      },
    ],
  }
  writeFileSync(join(dir, 'schema.json'), JSON.stringify(schema))
  writeFileSync(join(dir, 'runs.copy'), 'r1\t/old/root/1/r1/artifacts\nr2\t\\N\n')
  writeFileSync(join(dir, 'trace_tags.copy'), 'mlflow.artifactLocation\t/old/root/1/traces/t1\nother\t/old/root/x\n')
  return dir
}

describe('table files of either encoding', () => {
  it('referenced mode reads the locations of COPY text files', async () => {
    assert.deepEqual((await readReferences(copyTextDir())).sort(), [
      '/old/root/1/r1/artifacts',
      '/old/root/1/traces/t1',
    ])
  })

  it('a restore that moves the store rewrites COPY text files in place, field by field', async () => {
    const dir = copyTextDir()
    const counts = await rewriteLocationsInTableFiles(dir, locationRewriter('/old/root', '/new/root'))
    assert.deepEqual(counts, {'runs.artifact_uri': 1, 'trace_tags.value': 1})
    assert.equal(readFileSync(join(dir, 'runs.copy'), 'utf8'), 'r1\t/new/root/1/r1/artifacts\nr2\t\\N\n')
    assert.equal(
      readFileSync(join(dir, 'trace_tags.copy'), 'utf8'),
      'mlflow.artifactLocation\t/new/root/1/traces/t1\nother\t/old/root/x\n',
    )
  })
})
