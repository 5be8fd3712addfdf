import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../../base-command.js'
import {showBackupList} from '../../output/views/backup.js'

export interface BackupListEntry {
  id: string
  createdAt: string
  path: string
  bytes: number
  revision: string | null
  rows: number
  artifactFiles: number
  verifiedAt: string | null
  /** archive, or snapshot (bytes: what it added to the repository). */
  kind: 'archive' | 'snapshot'
}

export default class BackupList extends MlflowctlCommand<typeof BackupList> {
  static summary = 'List the complete backups in a repository, newest first.'
  static description = 'Half-written archives (.partial, or without their manifest sidecar) are never listed.'
  static examples = ['<%= config.bin %> <%= command.id %> --repo /backups/mlflow --json']
  static flags = {
    repo: Flags.string({
      summary:
        'The backup repository: a directory, s3://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix or gs://bucket/prefix.',
      required: true,
      env: 'MLFLOWCTL_REPO',
    }),
  }

  async run(): Promise<{backups: BackupListEntry[]}> {
    const entries = await (await this.deps.repositories.open(this.flags.repo)).list()
    const backups = entries.map((e) => ({
      id: e.id,
      createdAt: e.manifest.createdAt,
      path: e.path,
      bytes: e.bytes,
      revision: e.manifest.alembicRevision,
      rows: Object.values(e.manifest.rowCounts).reduce((a, b) => a + b, 0),
      artifactFiles: e.manifest.artifacts.files,
      verifiedAt: e.verifiedAt ?? null,
      kind: e.kind ?? 'archive',
    }))
    this.out(showBackupList(backups))
    return {backups}
  }
}
