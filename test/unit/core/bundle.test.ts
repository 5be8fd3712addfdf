import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {describe, it} from 'node:test'

import {EXTENSION_TEMPLATES, readTree} from '../../../src/adapters/fs/bundle-dir.js'
import {REQUIRED_ENV, checkManifest, parseManifest, renderBundle, type BundleFile} from '../../../src/core/bundle.js'
import {renderTemplate} from '../../../src/core/templates.js'
import {CheckFailedError, ConfigError, InternalError, UsageError} from '../../../src/errors.js'
import {assertManifestFresh} from '../../../src/core/bundle.js'

const md5 = (content: Buffer) => createHash('md5').update(content).digest('hex')
const templates = await readTree(EXTENSION_TEMPLATES)
const render = (overrides: Partial<Parameters<typeof renderBundle>[1]> = {}) =>
  renderBundle(templates, {
    storage: 'local',
    mlflowVersion: '3.17.2',
    pythonVersion: '3.11.7',
    toolVersion: '9.9.9',
    ...overrides,
  })

describe('renderBundle', () => {
  it('writes a Connect manifest whose checksums are the hex MD5 of every other file', () => {
    const {files, manifest} = render()
    const byPath = new Map(files.map((file) => [file.path, file.content]))
    assert.equal(manifest.version, 1)
    assert.deepEqual(
      Object.keys(manifest.files).sort(),
      files
        .map((f) => f.path)
        .filter((p) => p !== 'manifest.json')
        .sort(),
    )
    for (const [path, {checksum}] of Object.entries(manifest.files))
      assert.equal(checksum, md5(byPath.get(path)!), path)
    assert.ok(!files.some((file) => file.path.startsWith('tests/') || file.path.endsWith('.tmpl')))
    assert.equal(files.at(-1)!.path, 'manifest.json')
  })

  it('follows the MLflow version for app mode, python floor and pins', () => {
    const three = render()
    assert.equal(three.manifest.metadata.appmode, 'python-fastapi')
    assert.equal(three.manifest.metadata.entrypoint, 'app:app')
    assert.equal(three.manifest.environment.python.requires, '>=3.10')
    const two = render({mlflowVersion: '2.22.5'})
    assert.equal(two.manifest.metadata.appmode, 'python-api')
    const requirements = two.files.find((f) => f.path === 'requirements.txt')!.content.toString()
    assert.match(requirements, /^mlflow==2\.22\.5$/m)
    assert.match(requirements, /^sqlalchemy<2\.1$/m)
    assert.doesNotMatch(requirements, /\{\{/)
  })

  it('records storage, version and required env names in mlflowctl.json', () => {
    const {info} = render({storage: 'custom'})
    assert.deepEqual(info.requiredEnv, ['MLFLOW_BACKEND_STORE_URI', 'MLFLOW_ARTIFACTS_DESTINATION'])
    assert.equal(info.storage, 'custom')
    assert.equal(info.mlflowVersion, '3.17.2')
    assert.match(info.extensionVersion, /^\d+\.\d+\.\d+$/)
  })

  it('renders each cloud mode with its SDKs, its required env names and, for gcp, a Python 3.11 floor', () => {
    const requirements = (storage: 'aws' | 'azure' | 'gcp') =>
      render({storage})
        .files.find((f) => f.path === 'requirements.txt')!
        .content.toString()
    assert.match(requirements('aws'), /^boto3==/m)
    assert.doesNotMatch(requirements('aws'), /azure|google/)
    assert.match(requirements('azure'), /^azure-storage-blob==.*\n(.*\n)*python-tds==1\.17/m)
    assert.match(requirements('gcp'), /^cloud-sql-python-connector\[pg8000,pytds\]==/m)
    assert.deepEqual(render({storage: 'aws'}).info.requiredEnv, [
      'RDS_ENDPOINT',
      'RDS_DATABASE',
      'RDS_USERNAME',
      'AWS_REGION',
      'MLFLOW_ARTIFACTS_DESTINATION',
    ])
    assert.equal(render({storage: 'gcp'}).manifest.environment.python.requires, '>=3.11')
    assert.equal(render({storage: 'aws'}).manifest.environment.python.requires, '>=3.10')
  })

  it('requires the same env names as the extension does (settings.py CLOUD_REQUIRED)', () => {
    const settings = templates.find((file) => file.path === 'mlflowctl_extension/settings.py')!.content.toString()
    for (const mode of ['aws', 'azure', 'gcp'] as const) {
      const tuple = new RegExp(`"${mode}": \\(([^)]*)\\)`).exec(settings.slice(settings.indexOf('CLOUD_REQUIRED')))![1]
      assert.deepEqual(
        [...tuple.matchAll(/"([A-Z_]+)"/g)].map((m) => m[1]),
        REQUIRED_ENV[mode],
        mode,
      )
    }
  })

  it('refuses unknown modes and too-old Pythons', () => {
    assert.throws(
      () => render({storage: 'ftp' as never}),
      (e: unknown) => e instanceof UsageError && e.code === 'UNKNOWN_STORAGE_MODE',
    )
    assert.throws(
      () => render({pythonVersion: '3.9.1'}),
      (e: unknown) => e instanceof UsageError && e.code === 'PYTHON_TOO_OLD',
    )
  })
})

describe('renderTemplate', () => {
  it('is strict about missing and unused values', () => {
    assert.equal(renderTemplate('t', 'a={{x}}', {x: '1'}), 'a=1')
    assert.throws(() => renderTemplate('t', 'a={{x}} b={{y}}', {x: '1'}), InternalError)
    assert.throws(() => renderTemplate('t', 'a={{x}}', {x: '1', z: '2'}), /unused: z/)
  })
})

describe('manifest checks', () => {
  const {manifest, files} = render()
  const actual = Object.fromEntries(files.map((file: BundleFile) => [file.path, md5(file.content)]))

  it('passes a fresh bundle and reports changed and missing files', () => {
    assert.deepEqual(checkManifest(manifest, actual), {stale: [], missing: []})
    const check = checkManifest(manifest, {
      ...actual,
      'app.py': md5(Buffer.from('tampered')),
      'requirements.txt': undefined,
    })
    assert.deepEqual(check, {stale: ['app.py'], missing: ['requirements.txt']})
    assert.throws(
      () => assertManifestFresh(check, '/b'),
      (e: unknown) => e instanceof CheckFailedError && e.exit === 6 && /app\.py/.test(e.message),
    )
  })

  it('rejects manifests that are not Connect manifests or list unsafe paths', () => {
    assert.throws(() => parseManifest('{', 'm'), ConfigError)
    assert.throws(() => parseManifest('{"version": 2}', 'm'), /not a Connect manifest/)
    const evil = JSON.stringify({...manifest, files: {'../etc/passwd': {checksum: 'a'.repeat(32)}}})
    assert.throws(() => parseManifest(evil, 'm'), /unsafe path/)
  })
})
