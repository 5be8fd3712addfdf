// Reads a rendered bundle's files for `version bump`, and writes the rewritten ones atomically.
import {readFile, rename, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {BundleFile} from '../../core/bundle.js'
import type {BumpInput} from '../../core/version-bump.js'
import {EXTENSION_TEMPLATES, readRenderedBundle, readText, readTree} from './bundle-dir.js'

export async function readBumpInput(dir: string, toolVersion: string): Promise<BumpInput> {
  const {manifest, info} = await readRenderedBundle(dir)
  const files = new Map<string, Buffer>()
  for (const path of Object.keys(manifest.files)) {
    try {
      files.set(path, await readFile(join(dir, path)))
    } catch {
      // reported by bumpBundle as a file the manifest lists but the bundle lacks
    }
  }
  return {
    info,
    manifest,
    requirements: await readText(join(dir, 'requirements.txt'), 'requirements.txt'),
    files,
    templates: await readTree(EXTENSION_TEMPLATES),
    toolVersion,
  }
}

/** Each file is written beside itself and renamed over the old one, so a crash leaves old or new, never half. */
export async function writeBundleFiles(dir: string, files: BundleFile[]): Promise<void> {
  for (const file of files) {
    const target = join(dir, file.path)
    await writeFile(`${target}.mlflowctl-tmp`, file.content)
    await rename(`${target}.mlflowctl-tmp`, target)
  }
}
