// The intent records of upgrades: <data dir>/upgrades/<guid>.json, one per deployment with an unfinished upgrade,
// each written whole and fsynced before the step it records is left behind.
import {readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {parseIntent, type UpgradeIntent} from '../core/upgrade-intent.js'
import {fsFailure, makeDirs, syncDir, writeDurable} from './fs/safe-fs.js'

export function upgradeIntentFiles(dataDir: string) {
  const dir = join(dataDir, 'upgrades')
  const pathOf = (guid: string) => join(dir, `${guid}.json`)
  return {
    async read(guid: string): Promise<UpgradeIntent | undefined> {
      let text: string
      try {
        text = await readFile(pathOf(guid), 'utf8')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw fsFailure(error, 'read the upgrade record', pathOf(guid))
      }
      return parseIntent(text, pathOf(guid))
    },
    async write(intent: UpgradeIntent): Promise<void> {
      await makeDirs(dir)
      try {
        await writeDurable(pathOf(intent.guid), `${JSON.stringify(intent, null, 2)}\n`)
      } catch (error) {
        throw fsFailure(error, 'write the upgrade record', pathOf(intent.guid))
      }
    },
    async clear(guid: string): Promise<void> {
      await rm(pathOf(guid), {force: true})
      await syncDir(dir)
    },
  }
}
