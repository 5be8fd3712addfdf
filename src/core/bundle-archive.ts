import {assertManifestFresh, checkManifest, MANIFEST, parseManifest} from './bundle.js'

export interface BundleArchiveDeps {
  readText(path: string): Promise<string>
  md5Of(path: string): Promise<string | undefined>
  writeArchive(dir: string, paths: string[], output: string): Promise<{file: string; bytes: number; sha256: string}>
}

export interface BundleArchiveOptions {
  dir: string
  output: string
}

export interface BundleArchiveResult {
  file: string
  bytes: number
  sha256: string
  appMode: string
  files: string[]
}

/**
 * Builds the tar.gz Connect accepts: the manifest's files at the archive root, manifest.json last.
 * Writes only the output file (through a .partial file).
 * @throws CheckFailedError MANIFEST_STALE, ConfigError MANIFEST_INVALID
 */
export async function buildBundleArchive(
  deps: BundleArchiveDeps,
  options: BundleArchiveOptions,
): Promise<BundleArchiveResult> {
  const manifest = parseManifest(await deps.readText(`${options.dir}/${MANIFEST}`), `${options.dir}/${MANIFEST}`)
  const paths = Object.keys(manifest.files).sort()
  const actual = Object.fromEntries(
    await Promise.all(paths.map(async (path) => [path, await deps.md5Of(`${options.dir}/${path}`)] as const)),
  )
  assertManifestFresh(checkManifest(manifest, actual), options.dir)
  const archive = await deps.writeArchive(options.dir, [...paths, MANIFEST], options.output)
  return {...archive, appMode: manifest.metadata.appmode, files: [...paths, MANIFEST]}
}
