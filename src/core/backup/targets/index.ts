// The restore driver of each kind of target: restore.ts asks here once. A new kind is one driver file and one line.
import type {RestoreTarget} from '../restore.js'
import {connectTarget} from './connect.js'
import type {RestoreTargetDriver} from './driver.js'
import {postgresqlTarget} from './postgresql.js'
import {appDataTarget, sqliteTarget} from './sqlite-file.js'

const DRIVERS: {[K in RestoreTarget['kind']]: RestoreTargetDriver<Extract<RestoreTarget, {kind: K}>>} = {
  'app-data': appDataTarget,
  sqlite: sqliteTarget,
  postgresql: postgresqlTarget,
  connect: connectTarget,
}

export function restoreDriver<T extends RestoreTarget>(target: T): RestoreTargetDriver<T> {
  return DRIVERS[target.kind] as unknown as RestoreTargetDriver<T>
}

export {installKit, type LoadPlan, type RestoreTargetDriver} from './driver.js'
