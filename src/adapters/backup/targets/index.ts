// The site of each kind of restore target: restore-target.ts and target-lock.ts ask here once. A new kind is one
// file and one line.
import type {RestoreTarget} from '../../../core/backup/restore.js'
import {appDataSite} from './app-data.js'
import {connectSite} from './connect.js'
import {postgresqlSite} from './postgresql.js'
import type {TargetSite} from './site.js'
import {sqliteSite} from './sqlite.js'

const SITES: {[K in RestoreTarget['kind']]: (target: Extract<RestoreTarget, {kind: K}>) => TargetSite} = {
  'app-data': appDataSite,
  sqlite: sqliteSite,
  postgresql: postgresqlSite,
  connect: connectSite,
}

export function targetSite(target: RestoreTarget): TargetSite {
  return (SITES[target.kind] as (target: RestoreTarget) => TargetSite)(target)
}

export {localArtifactsTo, type TargetSite} from './site.js'
