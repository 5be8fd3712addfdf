import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {locationRewriter, sameRoot} from '../../../src/core/backup/artifact-locations.js'

describe('locationRewriter', () => {
  it('moves a local root in each spelling, keeping the spelling, and leaves everything else alone', () => {
    const rewrite = locationRewriter('/srv/old/artifacts', '/srv/new/store')
    assert.equal(rewrite('/srv/old/artifacts/1/abc/artifacts'), '/srv/new/store/1/abc/artifacts')
    assert.equal(rewrite('file:///srv/old/artifacts/1/abc/artifacts'), 'file:///srv/new/store/1/abc/artifacts')
    assert.equal(rewrite('file:/srv/old/artifacts/1'), 'file:/srv/new/store/1')
    assert.equal(rewrite('/srv/old/artifacts'), '/srv/new/store')
    assert.equal(rewrite('/srv/old/artifacts-other/1'), undefined, 'a sibling with the same prefix is not under it')
    assert.equal(rewrite('mlflow-artifacts:/1/abc/artifacts'), undefined, 'proxied URIs need no rewrite')
    assert.equal(rewrite('runs:/abc/model'), undefined)
  })

  it('moves an object-store root to a local directory and back', () => {
    assert.equal(
      locationRewriter('s3://bucket/mlflow/', '/restore/art')('s3://bucket/mlflow/2/r/artifacts'),
      '/restore/art/2/r/artifacts',
    )
    assert.equal(locationRewriter('s3://bucket/mlflow', '/restore/art')('s3://bucket/mlflow2/x'), undefined)
    assert.equal(locationRewriter('/old', 'gs://b/p')('file:///old/3/x'), 'gs://b/p/3/x')
    assert.equal(locationRewriter('file:///old/a', '/new/b')('/old/a/1'), '/new/b/1', 'a file: root matches paths too')
  })

  it('knows when the root did not move', () => {
    assert.ok(sameRoot('/srv/a/', 'file:///srv/a'))
    assert.ok(!sameRoot('/srv/a', '/srv/b'))
  })
})
