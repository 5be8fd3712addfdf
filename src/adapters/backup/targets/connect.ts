// A local-storage deployment on Connect (connect:GUID): what it holds is what its extension says; it is locked by a
// lock file in this machine's data directory (the extension refuses a second upload on its side too).
import {join} from 'node:path'

import type {RestoreTarget} from '../../../core/backup/restore.js'
import {NO_CONNECT, connectHasData} from '../../connect/ops-client.js'
import {ownScratch, type TargetSite} from './site.js'

export function connectSite(target: Extract<RestoreTarget, {kind: 'connect'}>): TargetSite {
  return {
    scratchRoot: ownScratch,
    takesArtifactsTo: false,
    checkKind: async () => undefined,
    inspect: async (connect) => ({
      holdsData: await connectHasData(connect ?? NO_CONNECT, target.guid),
      found: ['MLflow data'],
      foreign: [],
    }),
    safetyBackupOf: (dataDir) => join(dataDir, `connect-${target.guid}`),
    lockFiles: (dataDir) => [
      {file: join(dataDir, 'locks', `connect-${target.guid}.lock`), where: `connect:${target.guid}`},
    ],
  }
}
