// What a backup repository is to the use cases and commands: a directory or an object-store prefix behind one
// interface (adapters/backup/repository.ts implements both).
import type {BackupManifest} from './format.js'
import type {GcPlan, RepositoryFormat} from './snapshots.js'
import type {CreateDeps} from './create.js'

/** A listed backup: its archive, size, manifest and when `backup verify` last passed it. */
export interface RepoEntry {
  id: string
  path: string
  bytes: number
  manifest: BackupManifest
  verifiedAt?: string
  /** A self-contained archive (the default when absent), or a snapshot of deduplicated data. */
  kind?: 'archive' | 'snapshot'
}

/** What `backup verify` found in a snapshot's data. */
export interface SnapshotCheck {
  problems: string[]
  packsRead: number
  blobsChecked: number
}

export interface BackupRepository {
  /** As the user wrote it (no secrets: stores take credentials from the environment). */
  display: string
  lock(onStale: (message: string) => void): Promise<() => Promise<void>>
  stageArchive(id: string): Promise<string>
  commitArchive(manifest: BackupManifest, staged: string): Promise<string>
  list(): Promise<RepoEntry[]>
  /** A local path to the archive (downloaded when remote) and how to let go of it. */
  fetch(id: string): Promise<{path: string; release(): Promise<void>}>
  markVerified(id: string, at: Date): Promise<void>
  remove(id: string): Promise<void>
  /** Under the lock: removes or commits what killed runs left (see cleanUpRepo); returns what it did. */
  cleanUp(verify: (path: string) => Promise<BackupManifest>): Promise<string[]>
  /** Whether the archive has its listing sidecar (a backup `list` shows). */
  isCommitted(id: string): Promise<boolean>
  /** Whether a run of this tool recorded that it was writing the archive (with no sidecar: a killed run's debris). */
  inProgress(id: string): Promise<boolean>
  /** A write that failed (and cleaned up after itself): it is no longer in progress. */
  abandonArchive(id: string): Promise<void>
  /** The format `backup create` writes here by default, as recorded at first use (undefined before it). */
  format(): Promise<RepositoryFormat | undefined>
  /** Under the lock: deletes the data no listed snapshot needs (see SnapshotRepository.collectGarbage). */
  collectGarbage(passphrase: string | undefined): Promise<GcPlan & {repackedBlobs: number}>
  /**
   * The snapshots' data: every blob they need is indexed in a pack that exists (quick), and with `readData` all or
   * that percentage of their packs read and every blob checked against its ID.
   */
  checkSnapshots(
    ids: string[],
    passphrase: string | undefined,
    readData: 'none' | 'all' | number,
  ): Promise<SnapshotCheck>
  /** What `backup create` writes snapshots through (one run: it keeps the opened keys and the parent). */
  snapshotWriter(passphrase: string | undefined, onWarning: (message: string) => void): CreateDeps['snapshots']
}
