/** A local-storage deployment on Connect (connect:GUID): its snapshot is streamed from the extension's ops endpoint. */
import type {BackupSourceSpec} from '../create.js'
import {exportSqlite, type BackupSourceDriver} from './driver.js'

export const connectSource: BackupSourceDriver<Extract<BackupSourceSpec, {kind: 'connect'}>> = {
  engine: 'sqlite',
  locate: async () => undefined,
  reach: (source, _located, deps, scratch) =>
    deps.source.fetchConnectSnapshot(source.guid, deps.paths.join(scratch, 'remote')),
  exportDatabase: (_source, db, deps, scratch) => exportSqlite(db, deps, scratch),
  manifestExtras: (source) => ({contentGuid: source.guid}),
  historyLocation: (source) => `connect:${source.guid}`,
  secrets: () => [],
}
