import {Args, Flags} from '@oclif/core'
import {existsSync} from 'node:fs'
import {basename, dirname, resolve} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {ARCHIVE_SUFFIX} from '../../core/backup/format.js'
import {parseBackupRepo} from '../../core/backup/locations.js'
import {ExternalError} from '../../errors.js'
import {verifyBackupArchive} from '../../adapters/backup/archive.js'
import {resolvePassphrase} from '../../adapters/backup/crypto.js'
import {archivePath, markVerified} from '../../adapters/backup/repo.js'

export default class BackupVerify extends MlflowctlCommand<typeof BackupVerify> {
  static summary = 'Check a backup archive against its manifest: every entry, size and SHA-256.'
  static description = `Reads the whole archive as a stream and refuses unsafe entries (absolute paths, "..", symlinks, hard links),
a missing or edited manifest, and any missing, extra, resized or changed file. Exits 0 when intact (and records it for
prune's "newest verified"), 6 with the specific reason when not, 5 when the archive cannot be found.`
  static examples = ['<%= config.bin %> <%= command.id %> 20261128T061500Z-ab12cd --repo /backups/mlflow', '<%= config.bin %> <%= command.id %> /backups/mlflow/20261128T061500Z-ab12cd.mlflowctl-backup.tar.gz --json']
  static args = {backup: Args.string({description: 'Backup ID (with --repo) or archive path.', required: true})}
  static flags = {
    repo: Flags.string({summary: 'The backup repository: a directory.', env: 'MLFLOWCTL_REPO'}),
    'passphrase-file': Flags.file({summary: 'For an encrypted backup: file whose first line is the passphrase (or MLFLOWCTL_BACKUP_PASSPHRASE).', env: 'MLFLOWCTL_PASSPHRASE_FILE'}),
  }

  async run(): Promise<{id: string; path: string; files: number; revision: string | null}> {
    const repo = this.flags.repo ? parseBackupRepo(this.flags.repo, (path) => resolve(path)) : undefined
    const path = repo && !this.args.backup.includes('/') ? archivePath(repo, this.args.backup) : resolve(this.args.backup)
    if (!existsSync(path)) throw new ExternalError('BACKUP_NOT_FOUND', `${path} does not exist.`, {suggestions: ['List the backups: mlflowctl backup list --repo REPO.']})
    this.err(`Verifying ${path}...`)
    const manifest = await verifyBackupArchive(path, {passphrase: await resolvePassphrase(this.flags['passphrase-file'])})
    if (basename(path).endsWith(ARCHIVE_SUFFIX)) await markVerified(dirname(path), manifest.id, new Date())
    this.out(`Intact: ${manifest.id}, ${manifest.files.length} files, revision ${manifest.alembicRevision ?? 'none'}.`)
    return {id: manifest.id, path, files: manifest.files.length, revision: manifest.alembicRevision}
  }
}
