import {renderBundle, type StorageMode} from '../../core/bundle.js'
import {EXTENSION_TEMPLATES, readTree} from '../fs/bundle-dir.js'
import {detectPythonVersion, pythonCommand} from './python.js'
import {ensureVenv} from './venv.js'

/**
 * The Python of a venv with MLflow `version` and the extension's requirements: the very venv `dev up` (and the
 * fake Connect) build for a bundle pinned to that version, so usually cached. The one place the Python tools
 * (restore_db.py, migrate_db.py, verify --deep) get their interpreter.
 */
export async function mlflowVenvPython(
  version: string,
  options: {
    cacheDir: string
    purpose: string
    onProgress(line: string): void
    /** A storage mode whose SDKs the tool needs too (boto3 for s3://, azure-storage-blob, google-cloud-storage). */
    storage?: StorageMode
  },
): Promise<string> {
  const python = pythonCommand(process.env)
  const pythonVersion = await detectPythonVersion(python)
  const bundle = renderBundle(await readTree(EXTENSION_TEMPLATES), {
    storage: options.storage ?? 'local',
    mlflowVersion: version,
    pythonVersion,
    toolVersion: options.purpose,
  })
  const requirements = bundle.files.find((file) => file.path === 'requirements.txt')!.content.toString('utf8')
  const venv = await ensureVenv({
    cacheDir: options.cacheDir,
    python,
    pythonVersion,
    requirements,
    onProgress: options.onProgress,
  })
  return venv.python
}
