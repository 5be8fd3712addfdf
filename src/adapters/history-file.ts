import {appendFile, readFile} from 'node:fs/promises'

import {makeDirs} from './fs/safe-fs.js'
import {join} from 'node:path'

import {parseHistory, type HistoryEvent} from '../core/history.js'

/** The ledger lives at <data dir>/history.jsonl, one event per line, appended with O_APPEND. */
export function historyFile(dataDir: string) {
  const path = join(dataDir, 'history.jsonl')
  return {
    path,
    async append(event: HistoryEvent): Promise<void> {
      await makeDirs(dataDir)
      await appendFile(path, `${JSON.stringify(event)}\n`, {mode: 0o600})
    },
    async read(): Promise<HistoryEvent[]> {
      try {
        return parseHistory(await readFile(path, 'utf8'))
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
        throw error
      }
    },
  }
}
