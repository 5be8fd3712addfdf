import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  appModeFor,
  driverRequirementsFor,
  parseMlflowVersion,
  pythonRequiresFor,
  pythonSatisfies,
  supportedMlflowVersion,
} from '../../../src/core/versions.js'
import {UsageError} from '../../../src/errors.js'

describe('versions', () => {
  for (const [input, expected] of [
    ['3.17.2', '3.17.2'],
    ['3.1', '3.1.0'],
    ['2.22.0rc0', '2.22.0-rc.0'],
    ['v2.9.1', '2.9.1'],
  ] as const) {
    it(`parses ${input}`, () => assert.equal(parseMlflowVersion(input), expected))
  }

  for (const bad of ['latest', '3', '3.x', '1.2.3.4', '']) {
    it(`rejects "${bad}"`, () => assert.throws(() => parseMlflowVersion(bad), UsageError))
  }

  it('refuses versions the extension cannot run', () => {
    assert.throws(() => supportedMlflowVersion('1.30.1'), /not supported/)
    assert.throws(() => supportedMlflowVersion('4.0.0'), /not supported/)
    assert.equal(supportedMlflowVersion('2.0.1'), '2.0.1')
  })

  for (const [version, mode] of [
    ['2.22.5', 'python-api'],
    ['3.2.0', 'python-api'],
    ['3.3.0', 'python-fastapi'],
    ['3.17.2', 'python-fastapi'],
  ] as const) {
    it(`runs MLflow ${version} as ${mode}`, () => assert.equal(appModeFor(version), mode))
  }

  for (const [version, floor] of [
    ['2.17.2', '>=3.8'],
    ['2.18.0', '>=3.9'],
    ['3.1.4', '>=3.9'],
    ['3.2.0', '>=3.10'],
  ] as const) {
    it(`needs Python ${floor} for MLflow ${version}`, () => assert.equal(pythonRequiresFor(version), floor))
  }

  it('compares a Python version with a floor', () => {
    assert.equal(pythonSatisfies('3.11.7', '>=3.10'), true)
    assert.equal(pythonSatisfies('3.9.18', '>=3.10'), false)
    assert.equal(pythonSatisfies('4.0.0', '>=3.10'), true)
  })

  it('pins SQLAlchemy below 2.1 for MLflow 2.x only, with the matching PostgreSQL driver', () => {
    assert.ok(driverRequirementsFor('2.22.5').includes('sqlalchemy<2.1'))
    assert.ok(driverRequirementsFor('2.22.5').some((r) => r.startsWith('psycopg2-binary')))
    assert.ok(!driverRequirementsFor('3.17.2').some((r) => r.startsWith('sqlalchemy')))
    assert.ok(driverRequirementsFor('3.17.2').some((r) => r.startsWith('psycopg[binary]')))
    // 3.0-3.8 import FallbackAsyncAdaptedQueuePool, which SQLAlchemy 2.1 removed.
    assert.ok(driverRequirementsFor('3.8.1').includes('sqlalchemy<2.1'))
    assert.ok(!driverRequirementsFor('3.9.0').some((r) => r.startsWith('sqlalchemy')))
    // Before 2.16 MLflow imports pkg_resources, which setuptools 82 removed and a uv venv lacks.
    assert.ok(driverRequirementsFor('2.9.2').includes('setuptools<81'))
    assert.ok(!driverRequirementsFor('2.16.2').some((r) => r.startsWith('setuptools')))
  })
})
