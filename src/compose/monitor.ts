// What `deploy-monitor` runs with: the Connect client, the monitor's templates, and the tar.gz Connect takes.
import {randomBytes} from 'node:crypto'
import {mkdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {ConnectClient} from '../adapters/connect/client.js'
import {PACKAGE_ROOT, readTree, writeFiles} from '../adapters/fs/bundle-dir.js'
import {writeTarGz} from '../adapters/fs/tar-gz.js'
import {detectPythonVersion, pythonCommand} from '../adapters/python/python.js'
import type {BundleFile} from '../core/bundle.js'
import type {MonitorDeps} from '../core/monitor.js'

export const MONITOR_TEMPLATES = join(PACKAGE_ROOT, 'templates', 'monitor')

export function createMonitorDeps(connect: ConnectClient): MonitorDeps & {
  templates(): Promise<BundleFile[]>
  pythonVersion(): Promise<string>
} {
  return {
    connect,
    async archive(files) {
      const work = join(tmpdir(), `mlflowctl-monitor-${process.pid}-${randomBytes(4).toString('hex')}`)
      await mkdir(work, {recursive: true, mode: 0o700})
      try {
        await writeFiles(join(work, 'bundle'), files)
        const paths = files.map((file) => file.path).filter((path) => path !== 'manifest.json')
        const result = await writeTarGz(join(work, 'bundle'), [...paths, 'manifest.json'], join(work, 'bundle.tar.gz'))
        return await readFile(result.file)
      } finally {
        await rm(work, {recursive: true, force: true})
      }
    },
    now: () => Date.now(),
    templates: () => readTree(MONITOR_TEMPLATES),
    pythonVersion: () => detectPythonVersion(pythonCommand(process.env)),
  }
}
