import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, readdir, readFile, rename, stat, writeFile} from 'node:fs/promises'
import {dirname, join, relative, sep} from 'node:path'
import {fileURLToPath} from 'node:url'

import {MANIFEST, parseManifest, type BundleFile, type BundleInfo, type ConnectManifest} from '../../core/bundle.js'
import {ExternalError} from '../../errors.js'

/** The package root (three levels above this file in both src/ and dist/). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const EXTENSION_TEMPLATES = join(PACKAGE_ROOT, 'templates', 'extension')

const NEVER_BUNDLED = new Set(['tests', '__pycache__', '.pytest_cache', 'node_modules', '.git'])

/** Reads every file under `root` except tests and caches. Reads only. */
export async function readTree(root: string): Promise<BundleFile[]> {
  const out: BundleFile[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, {withFileTypes: true})) {
      if (NEVER_BUNDLED.has(entry.name) || entry.name.endsWith('.pyc')) continue
      const full = join(dir, entry.name)
      if (entry.isDirectory()) await walk(full)
      else if (entry.isFile())
        out.push({path: relative(root, full).split(sep).join('/'), content: await readFile(full)})
    }
  }
  await walk(root)
  return out.sort((a, b) => a.path.localeCompare(b.path))
}

/** True when `dir` does not exist or has no entries. */
export async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return false
    throw error
  }
}

/** Writes the files under `dir`, each through a temp file and a rename, so a crash leaves no half file. */
export async function writeFiles(dir: string, files: BundleFile[]): Promise<void> {
  try {
    for (const file of files) {
      const target = join(dir, ...file.path.split('/'))
      await mkdir(dirname(target), {recursive: true})
      const temp = `${target}.partial-${process.pid}`
      await writeFile(temp, file.content)
      await rename(temp, target)
    }
  } catch (error) {
    throw new ExternalError('WRITE_FAILED', `Cannot write the bundle to ${dir}: ${(error as Error).message}.`, {
      cause: error,
    })
  }
}

/** Streams a file's MD5; undefined when it does not exist. */
export async function md5OfFile(path: string): Promise<string | undefined> {
  try {
    if (!(await stat(path)).isFile()) return undefined
  } catch {
    return undefined
  }
  const hash = createHash('md5')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Reads a text file, mapping "not there" to a clear error. */
export async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new ExternalError(
      code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'READ_FAILED',
      `Cannot read ${what} at ${path}: ${code ?? (error as Error).message}.`,
      {
        suggestions: code === 'ENOENT' ? ['Render a bundle first with `mlflowctl init DIR`.'] : [],
      },
    )
  }
}

/** Reads a rendered bundle's manifest.json and mlflowctl.json. Reads only.
 * @throws ExternalError FILE_NOT_FOUND, ConfigError MANIFEST_INVALID */
export async function readRenderedBundle(dir: string): Promise<{manifest: ConnectManifest; info: BundleInfo}> {
  const manifestPath = join(dir, MANIFEST)
  const manifest = parseManifest(await readText(manifestPath, 'the bundle manifest'), manifestPath)
  const info = JSON.parse(await readText(join(dir, 'mlflowctl.json'), 'mlflowctl.json')) as BundleInfo
  return {manifest, info}
}
