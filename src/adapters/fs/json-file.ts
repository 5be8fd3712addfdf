import {chmod, readFile, rename, writeFile} from 'node:fs/promises'

/** Writes JSON through a temp file and a rename, readable by the owner only (0600). */
export async function writePrivateJson(path: string, value: unknown): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`
  await writeFile(temp, `${JSON.stringify(value, null, 2)}\n`, {mode: 0o600})
  await chmod(temp, 0o600)
  await rename(temp, path)
}

/** Reads a JSON file; undefined when it is missing or unreadable. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined
  }
}
