// A restore's gate on a SQLite file (quick_check, foreign_key_check, row counts, its schema objects), in a worker thread: it runs while
// the archive's artifacts are still being extracted, which better-sqlite3's synchronous calls on the main thread
// would stall. Posts {ok: findings} or {error: message}.
import {parentPort, workerData} from 'node:worker_threads'

import {inspectRestoredSqlite} from './deep-verify.js'

try {
  const {file, thorough} = workerData as {file: string; thorough: boolean}
  const {integrity, foreignKeyViolations, rowCounts, objects} = inspectRestoredSqlite(file, {thorough})
  parentPort!.postMessage({ok: {integrity, foreignKeyViolations, rowCounts, objects}})
} catch (error) {
  parentPort!.postMessage({error: (error as Error).message})
}
