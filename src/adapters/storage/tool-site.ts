// `storage report` and `gc` for a self-hosted store (--db URL --artifacts-source …): the extension's own code,
// run here by templates/tools/storage_tool.py in the managed MLflow venv, so the rows go through MLflow's store.
import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {parseStorageReport, type GcEvent} from '../../core/extension-contract.js'
import type {GcRequest, StorageSite} from '../../core/storage.js'
import {redact} from '../../core/redact.js'
import {ExternalError} from '../../errors.js'
import {PACKAGE_ROOT} from '../fs/bundle-dir.js'
import {readGcEvents} from './ops-site.js'

const STORAGE_TOOL = join(PACKAGE_ROOT, 'templates', 'tools', 'storage_tool.py')

export interface ToolSiteOptions {
  /** The interpreter of the managed MLflow venv. */
  python: () => Promise<string>
  databaseUrl: string
  artifacts: string
  location: string
}

export function toolStorageSite(options: ToolSiteOptions): StorageSite {
  const run = async (args: string[]) => {
    const child = spawn(await options.python(), [STORAGE_TOOL, ...args], {
      // The URL may hold a password: the environment, never argv.
      env: {...process.env, PYTHONUNBUFFERED: '1', MLFLOWCTL_STORAGE_DB_URL: options.databaseUrl},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
    const exited = new Promise<number>((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)))
    })
    const failed = async () => {
      const code = await exited
      if (code === 0) return undefined
      const reason = redact(stderr.trim().split('\n').at(-1) ?? `exit ${code}`)
      return code === 3
        ? new ExternalError('GC_RUNNING', `${options.location}: ${reason}`, {
            suggestions: ['Let it finish, then run this again.'],
          })
        : new ExternalError(
            'STORAGE_TOOL_FAILED',
            `${options.location}: ${reason || `the storage tool exited with ${code}`}`,
          )
    }
    return {lines: createInterface({input: child.stdout, crlfDelay: Infinity}), failed}
  }
  return {
    location: options.location,
    async report() {
      const {lines, failed} = await run(['report', options.artifacts])
      let text = ''
      for await (const line of lines) text += line
      const error = await failed()
      if (error) throw error
      return parseStorageReport(text, `The storage report of ${options.location}`)
    },
    async gc(request: GcRequest, onEvent: (event: GcEvent) => void) {
      const {lines, failed} = await run(['gc', options.artifacts, JSON.stringify(request)])
      const result = await readGcEvents(lines, onEvent, options.location).catch(async (error: Error) => {
        throw (await failed()) ?? error
      })
      const error = await failed()
      if (error) throw error
      return result
    },
  }
}
