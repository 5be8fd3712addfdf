// The backup driver of each kind of source: create.ts asks here once. A new kind is one driver file and one line.
import type {BackupSourceSpec} from '../create.js'
import {connectSource} from './connect.js'
import type {BackupSourceDriver} from './driver.js'
import {appDataSource, sqliteSource} from './local.js'
import {postgresqlSource} from './postgresql.js'

const DRIVERS: {[K in BackupSourceSpec['kind']]: BackupSourceDriver<Extract<BackupSourceSpec, {kind: K}>>} = {
  'app-data': appDataSource,
  sqlite: sqliteSource,
  postgresql: postgresqlSource,
  connect: connectSource,
}

export function sourceDriver<S extends BackupSourceSpec>(source: S): BackupSourceDriver<S> {
  return DRIVERS[source.kind] as unknown as BackupSourceDriver<S>
}

export type {BackupSourceDriver, Located} from './driver.js'
