// The snapshot side of `backup create` (CreateDeps['snapshots']): records the format at first use, opens the
// repository (its keys from the passphrase), finds the parent snapshot of the same source, and writes.
import type {CreateDeps} from '../../core/backup/create.js'
import {SQLITE_FILE_ENTRY} from '../../core/backup/format.js'
import type {SnapshotDocument, SnapshotTree} from '../../core/backup/snapshots.js'
import {ConfigError} from '../../errors.js'
import type {OpenedRepository, SnapshotRepository} from './snapshot-repository.js'

export function snapshotWriter(
  snapshots: SnapshotRepository,
  listKinds: () => Promise<Array<{kind?: string}>>,
  passphrase: string | undefined,
  onWarning: (message: string) => void,
): CreateDeps['snapshots'] {
  let opened: OpenedRepository | undefined
  let parent: {doc: SnapshotDocument; tree: SnapshotTree} | undefined
  const open = async () => (opened ??= await snapshots.open(passphrase))
  return {
    async format(wanted) {
      const recorded = (await snapshots.config())?.format
      if (recorded) return wanted ?? recorded
      // First use. A repository of archives from before snapshots existed keeps writing archives unless told
      // otherwise: scripts that copy *.mlflowctl-backup.tar.gz off-site would otherwise stop getting new ones.
      const legacy = !wanted && (await listKinds().catch(() => [])).some((entry) => entry.kind !== 'snapshot')
      const format = wanted ?? (legacy ? 'archive' : 'snapshot')
      if (legacy)
        onWarning(
          `${snapshots.display} holds archives and now records "archive" as its format; pass --format snapshot for deduplicated snapshots (list and restore show both)`,
        )
      return format
    },
    // An archive's repository records its format once the archive is committed: a failed first backup leaves nothing.
    async recordArchive() {
      await snapshots.initialise('archive', undefined, new Date())
    },
    async parent(location) {
      const config = await snapshots.config()
      if (!config) return undefined
      parent = await snapshots.parentOf(location, await open())
      if (!parent) return undefined
      const dbFiles = parent.tree.files.filter((file) => file.path.startsWith('db/'))
      return {
        id: parent.doc.manifest.id,
        databaseState: dbFiles.some((file) => file.path === SQLITE_FILE_ENTRY) ? parent.tree.databaseState : undefined,
        manifest: parent.doc.manifest,
        dbFiles: dbFiles.map((file) => ({name: file.path, size: file.size})),
      }
    },
    async write(entries, options, finish) {
      const config = (await snapshots.config()) ?? (await snapshots.initialise('snapshot', passphrase, new Date()))
      if (passphrase && !config.encryption)
        throw new ConfigError(
          'REPO_NOT_ENCRYPTED',
          `${snapshots.display} was first used without a passphrase, so its snapshots are not encrypted; refusing to write this one in clear.`,
          {
            suggestions: [
              'Use a new repository for encrypted snapshots, or pass --format archive for one encrypted archive here.',
            ],
          },
        )
      const written = await snapshots.writeSnapshot({
        opened: await open(),
        entries,
        parent,
        forceRead: options.forceRead,
        databaseState: options.databaseState,
        finish,
      })
      const where = snapshots.store.localPath(written.key) ?? `${snapshots.display.replace(/\/+$/, '')}/${written.key}`
      return {path: where, manifest: written.manifest, stats: written.stats}
    },
  }
}
