import {Args, Flags} from '@oclif/core'
import {existsSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'

import {MlflowctlCommand} from '../../base-command.js'
import {showVerified} from '../../output/views/backup.js'
import {ARCHIVE_SUFFIX} from '../../core/backup/format.js'
import {CheckFailedError, ExternalError, UsageError} from '../../errors.js'
import {SNAPSHOT_HANDLE_SUFFIX, parseSubset} from '../../core/backup/snapshots.js'
import type {BackupManifest} from '../../core/backup/format.js'
import type {BackupRepository} from '../../compose/command-deps.js'
import {deepVerify, type DeepVerifyResult} from '../../core/backup/deep-verify.js'

export default class BackupVerify extends MlflowctlCommand<typeof BackupVerify> {
  static summary = 'Check a backup against its manifest; --deep also test-restores it.'
  static description = `Reads the whole archive as a stream and refuses unsafe entries (absolute paths, "..", symlinks, hard links),
a missing or edited manifest, and any missing, extra, resized or changed file. --deep then restores the database into a
scratch SQLite with real MLflow (a managed venv), runs SQLite's integrity and foreign-key checks, compares every table's
row count with the manifest, reports model versions whose artifacts the backup lacks (a failure) and run directories
without a run row (orphans, a warning). Exits 0 when intact (and records it for prune's "newest verified"), 6 with the
specific reason when not (BACKUP_INCOMPLETE: an archive that a killed create recorded writing and never listed; an
archive copied without its sidecar is judged on its own contents), 5 when the archive cannot be found.
A snapshot is checked quickly by default: every blob it needs is in an index entry whose pack exists with the indexed size.
--read-data reads it whole as a restore would (every file against the manifest's SHA-256, row counts); --read-data-subset
10% reads a random tenth of its packs and checks every blob in them against its ID.`
  static examples = [
    '<%= config.bin %> <%= command.id %> 20261128T061500Z-ab12cd --repo /backups/mlflow',
    '<%= config.bin %> <%= command.id %> /backups/mlflow/20261128T061500Z-ab12cd.mlflowctl-backup.tar.gz --json',
  ]
  static args = {
    backup: Args.string({description: 'Backup ID or latest (with --repo), or an archive path.', required: true}),
  }
  static flags = {
    repo: Flags.string({
      summary:
        'The backup repository: a directory, s3://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix or gs://bucket/prefix.',
      env: 'MLFLOWCTL_REPO',
    }),
    deep: Flags.boolean({
      summary: 'Also restore into a scratch SQLite and check the data and the artifact references.',
      env: 'MLFLOWCTL_DEEP',
    }),
    'read-data': Flags.boolean({
      summary: 'Snapshot: read all its data (every blob checked against its ID, every file against the manifest).',
      env: 'MLFLOWCTL_READ_DATA',
      exclusive: ['read-data-subset'],
    }),
    'read-data-subset': Flags.string({
      summary: 'Snapshot: read this share of its packs, chosen at random (10%), to check a large repository in parts.',
      env: 'MLFLOWCTL_READ_DATA_SUBSET',
    }),
    'passphrase-file': Flags.file({
      summary: 'For an encrypted backup: file whose first line is the passphrase (or MLFLOWCTL_BACKUP_PASSPHRASE).',
      env: 'MLFLOWCTL_PASSPHRASE_FILE',
    }),
  }

  async run(): Promise<{id: string; path: string; files: number; revision: string | null; deep?: DeepVerifyResult}> {
    const repository = this.flags.repo
      ? await this.deps.repositories.open(this.flags.repo, this.settings.dataDir)
      : undefined
    const archive = await this.deps.repositories.fetch(this.args.backup, repository)
    try {
      return await this.verify(archive.path, repository, archive.id)
    } finally {
      await archive.release()
    }
  }

  private async verify(
    path: string,
    repository: BackupRepository | undefined,
    id: string | undefined,
  ): Promise<{id: string; path: string; files: number; revision: string | null; deep?: DeepVerifyResult}> {
    if (!existsSync(path))
      throw new ExternalError('BACKUP_NOT_FOUND', `${path} does not exist.`, {
        suggestions: ['List the backups: mlflowctl backup list --repo REPO.'],
      })
    this.err(`Verifying ${id ?? path}...`)
    const passphrase = await this.deps.passphrase(this.flags['passphrase-file'])
    const subset = this.flags['read-data-subset']
    const percent = subset === undefined ? undefined : parseSubset(subset)
    if (subset !== undefined && percent === undefined)
      throw new UsageError('INVALID_SUBSET', `--read-data-subset ${subset} is not a percentage in (0, 100].`, {
        suggestions: ['Write it as 10% or 10.'],
      })
    const snapshot = path.endsWith(SNAPSHOT_HANDLE_SUFFIX) && repository && id
    // A snapshot's quick check reads no data (restic's check); --read-data and --deep read all of it.
    const manifest =
      snapshot && !this.flags['read-data'] && !this.flags.deep
        ? await this.checkSnapshot(repository, id, passphrase, percent)
        : await this.deps.verifyArchive(path, {passphrase, scratchRoot: join(this.settings.dataDir, 'verify')})
    let deep: DeepVerifyResult | undefined
    if (this.flags.deep) {
      this.err('Restoring into a scratch SQLite database for the deep checks...')
      deep = await deepVerify(
        this.deps.deepVerify({
          cacheDir: this.settings.cacheDir,
          dataDir: this.settings.dataDir,
          passphrase,
          confirm: async () => false,
          onProgress: (line) => this.err(line),
          onWarning: (message) => this.warnUser(message),
        }),
        path,
      )
      if (deep.orphans.length > 0)
        this.warnUser(
          `${deep.orphans.length} run artifact directories have no run row (orphans): ${deep.orphans.slice(0, 5).join(', ')}${deep.orphans.length > 5 ? ', …' : ''}`,
        )
    }
    // An archive that a create recorded writing and never listed is that create's debris, stopped by a kill; any
    // other archive without a sidecar (a copy, one given by path) is judged on its own contents.
    const home =
      repository && id
        ? repository
        : basename(path).endsWith(ARCHIVE_SUFFIX)
          ? await this.deps.repositories.directory(dirname(path))
          : undefined
    const listed = home ? await home.isCommitted(manifest.id) : false
    if (home && !listed && (await home.inProgress(manifest.id))) {
      throw new CheckFailedError(
        'BACKUP_INCOMPLETE',
        `${manifest.id} is intact but incomplete: it has no listing sidecar (${manifest.id}.manifest.json), so \`backup list\` does not show it and prune does not count it. A backup create was stopped before it committed it.`,
        {
          suggestions: [
            `The next backup create into ${home.display} commits it (it verifies it first), or removes it if damaged.`,
          ],
        },
      )
    }
    if (home && !listed)
      this.warnUser(
        `${manifest.id} is intact, but ${home.display} does not list it (no ${manifest.id}.manifest.json beside it).`,
      )
    if (home && listed) await home.markVerified(manifest.id, new Date())
    this.out(showVerified(manifest, deep))
    return {id: manifest.id, path, files: manifest.files.length, revision: manifest.alembicRevision, deep}
  }

  /** Every blob the snapshot needs is indexed in a pack of the indexed size; with a subset, those packs are read. */
  private async checkSnapshot(
    repository: BackupRepository,
    id: string,
    passphrase: string | undefined,
    percent: number | undefined,
  ): Promise<BackupManifest> {
    const entry = (await repository.list()).find((listed) => listed.id === id)!
    const check = await repository.checkSnapshots([id], passphrase, percent ?? 'none')
    if (check.problems.length > 0)
      throw new CheckFailedError(
        'BACKUP_CORRUPT',
        `${id}: ${check.problems.slice(0, 5).join('; ')}${check.problems.length > 5 ? ` (and ${check.problems.length - 5} more)` : ''}.`,
        {
          suggestions: [
            'Restore another snapshot (mlflowctl backup list); run backup verify --read-data to find every damaged one.',
          ],
        },
      )
    if (percent !== undefined)
      this.err(`Read ${check.packsRead} packs (${percent}%), ${check.blobsChecked} blobs checked.`)
    return entry.manifest
  }
}
