// The success paths of backup create/list/verify/restore/prune and replica status in process, with the repository,
// the extension and the replica replaced by fakes through the composition root: flags → options, what each command
// asks its collaborators for, the --json envelope and exit 0. The database is a small SQLite file on local disk.
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, renameSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, it} from 'node:test'

import Database from 'better-sqlite3'

import BackupCreate from '../../src/commands/backup/create.js'
import BackupList from '../../src/commands/backup/list.js'
import BackupPrune from '../../src/commands/backup/prune.js'
import BackupRestore from '../../src/commands/backup/restore.js'
import BackupVerify from '../../src/commands/backup/verify.js'
import ReplicaStatus from '../../src/commands/replica/status.js'
import type {BackupRepository, CommandDeps} from '../../src/compose/command-deps.js'
import type {BackupManifest} from '../../src/core/backup/format.js'
import type {ReplicaContents} from '../../src/core/replica.js'
import {ExternalError} from '../../src/errors.js'
import {runInProcess} from '../support/in-process.js'
import {tempDir} from '../support/cli.js'

const env = {CONNECT_SERVER: undefined, CONNECT_API_KEY: undefined, MLFLOWCTL_CONFIG_DIR: tempDir('in-process-')}

/** A repository held in a map, its archives in a scratch directory: records every call a command makes. */
class MemoryRepository implements BackupRepository {
  display = 'memory://team-a'
  calls: string[] = []
  readonly archives = new Map<string, {path: string; manifest: BackupManifest; verifiedAt?: string}>()
  constructor(private readonly dir = tempDir('memory-repo-')) {}

  // A repository of archives that records no format (as one from before snapshots): the snapshot side is covered
  // by the integration suite.
  format = async () => undefined
  collectGarbage = async (): Promise<never> => {
    throw new Error('no snapshots here')
  }
  checkSnapshots = async () => ({problems: [], packsRead: 0, blobsChecked: 0})
  snapshotWriter = () => ({
    format: async () => 'archive' as const,
    parent: async () => undefined,
    recordArchive: async () => undefined,
    write: async (): Promise<never> => {
      throw new Error('no snapshots here')
    },
  })
  async lock() {
    this.calls.push('lock')
    return async () => void this.calls.push('unlock')
  }
  async stageArchive(id: string) {
    return join(this.dir, `${id}.staged`)
  }
  async commitArchive(manifest: BackupManifest, staged: string) {
    const path = join(this.dir, `${manifest.id}.archive`)
    renameSync(staged, path)
    this.archives.set(manifest.id, {path, manifest})
    this.calls.push(`commit ${manifest.id}`)
    return path
  }
  async list() {
    return [...this.archives.values()].map(({path, manifest, verifiedAt}) => ({
      id: manifest.id,
      path,
      bytes: statSync(path).size,
      manifest,
      verifiedAt,
    }))
  }
  async fetch(id: string) {
    const archive = this.archives.get(id)
    if (!archive) throw new ExternalError('BACKUP_NOT_FOUND', `${id} is not in ${this.display}.`)
    this.calls.push(`fetch ${id}`)
    return {path: archive.path, release: async () => void this.calls.push(`release ${id}`)}
  }
  async markVerified(id: string, at: Date) {
    this.archives.get(id)!.verifiedAt = at.toISOString()
    this.calls.push(`verified ${id}`)
  }
  async remove(id: string) {
    this.archives.delete(id)
    this.calls.push(`remove ${id}`)
  }
  async cleanUp() {
    return []
  }
  async isCommitted(id: string) {
    return this.archives.has(id)
  }
  async inProgress() {
    return false
  }
  async abandonArchive(id: string) {
    this.calls.push(`abandon ${id}`)
  }
}

/** The newest MLflow schema revision this mlflowctl knows: a restore refuses one it does not. */
async function knownRevision(): Promise<string> {
  const {loadCatalog} = await import('../../src/adapters/catalog.js')
  const {newestSupportedRelease} = await import('../../src/core/catalog.js')
  return newestSupportedRelease((await loadCatalog()).catalog).trackingHead
}

/** Every table MLflow's migrations make at `revision` (a restore refuses a database that lacks one). */
async function mlflowTables(revision: string): Promise<string[]> {
  const {mlflowSchemaAt} = await import('../../src/compose/backup.js')
  return [...(await mlflowSchemaAt(revision))!.tables]
}

/** An app-data directory: a SQLite database at a known revision with two experiments, and one artifact. */
async function appData(): Promise<string> {
  const revision = await knownRevision()
  const dir = tempDir('app-data-')
  const db = new Database(join(dir, 'mlflow.db'))
  db.exec(`CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
    INSERT INTO alembic_version VALUES ('${revision}');
    CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    INSERT INTO experiments VALUES (0, 'Default'), (1, 'kept');
    CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, experiment_id INTEGER, artifact_uri TEXT);
    CREATE TABLE model_versions (name TEXT, version INTEGER, source TEXT, PRIMARY KEY (name, version));`)
  for (const table of await mlflowTables(revision))
    db.exec(`CREATE TABLE IF NOT EXISTS "${table}" (id INTEGER PRIMARY KEY)`)
  db.close()
  mkdirSync(join(dir, 'artifacts', '1'), {recursive: true})
  writeFileSync(join(dir, 'artifacts', '1', 'model.bin'), 'weights')
  return dir
}

function withRepository(repository: MemoryRepository, extra: Partial<CommandDeps> = {}): Partial<CommandDeps> {
  return {
    repositories: {
      open: async (raw) => {
        assert.equal(raw, 'memory://team-a')
        return repository
      },
      fetch: async (backup, repo) => ({...(await repo!.fetch(backup)), id: backup}),
      directory: async () => repository,
    },
    ...extra,
  }
}

async function createOne(repository: MemoryRepository): Promise<string> {
  const result = await runInProcess(
    BackupCreate,
    ['--source', await appData(), '--repo', 'memory://team-a', '--no-encrypt', '--json'],
    {env, deps: withRepository(repository)},
  )
  assert.equal(result.code, 0, result.stdout + result.stderr)
  return result.json!.result.id
}

describe('backup create, list, verify, restore and prune (in process, repository faked)', () => {
  it('create: takes the lock, commits one archive with every row and the artifact, exit 0', async () => {
    const repository = new MemoryRepository()
    const result = await runInProcess(
      BackupCreate,
      ['--source', await appData(), '--repo', 'memory://team-a', '--no-encrypt', '--json'],
      {env, deps: withRepository(repository)},
    )
    assert.equal(result.code, 0, result.stdout + result.stderr)
    const {id, rows, files, revision} = result.json!.result
    assert.deepEqual(repository.calls, ['lock', `commit ${id}`, 'unlock'])
    assert.equal(revision, await knownRevision())
    assert.equal(rows, 3)
    assert.equal(files, 1, 'the artifact')
    assert.deepEqual(
      repository.archives.get(id)!.manifest.files.map((file) => file.path),
      ['db/mlflow.db', 'artifacts/1/model.bin'],
    )
  })

  it('list: every listed backup with its id, rows and revision', async () => {
    const repository = new MemoryRepository()
    const id = await createOne(repository)
    const result = await runInProcess(BackupList, ['--repo', 'memory://team-a', '--json'], {
      env,
      deps: withRepository(repository),
    })
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.deepEqual(
      result.json!.result.backups.map((entry: {id: string}) => entry.id),
      [id],
    )
  })

  it('verify: reads the archive the repository hands over, checks it and records the pass', async () => {
    const repository = new MemoryRepository()
    const id = await createOne(repository)
    repository.calls = []
    const result = await runInProcess(BackupVerify, [id, '--repo', 'memory://team-a', '--json'], {
      env,
      deps: withRepository(repository),
    })
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(result.json!.result.id, id)
    assert.equal(result.json!.result.files, 2)
    assert.deepEqual(repository.calls, [`fetch ${id}`, `verified ${id}`, `release ${id}`])
  })

  it('restore: into an empty app-data directory, every row and the artifact back', async () => {
    const repository = new MemoryRepository()
    const id = await createOne(repository)
    const target = join(tempDir(), 'restored')
    const result = await runInProcess(BackupRestore, [id, '--repo', 'memory://team-a', '--to', target, '--json'], {
      env,
      deps: withRepository(repository),
    })
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.ok(repository.calls.includes(`release ${id}`), 'the fetched archive is let go')
    const db = new Database(join(target, 'mlflow.db'), {readonly: true})
    const names = db.prepare('SELECT name FROM experiments ORDER BY experiment_id').all()
    db.close()
    assert.deepEqual(names, [{name: 'Default'}, {name: 'kept'}])
    assert.ok(existsSync(join(target, 'artifacts', '1', 'model.bin')))
  })

  it('prune --keep-last 1 --yes: under the lock, removes all but the newest, exit 0', async () => {
    const repository = new MemoryRepository()
    for (let i = 0; i < 3; i++) await createOne(repository)
    repository.calls = []
    const result = await runInProcess(
      BackupPrune,
      ['--repo', 'memory://team-a', '--keep-last', '1', '--yes', '--json'],
      {
        env,
        deps: withRepository(repository),
      },
    )
    assert.equal(result.code, 0, result.stdout + result.stderr)
    const {deleted, keep, remove} = result.json!.result
    assert.equal(deleted, true)
    assert.equal(remove.length, 2)
    assert.deepEqual([...repository.archives.keys()], [keep[0].id])
    assert.deepEqual(repository.calls, [
      'lock',
      ...remove.map((backup: {id: string}) => `remove ${backup.id}`),
      'unlock',
    ])
  })
})

describe('replica status (in process, extension and replica faked)', () => {
  const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
  const generation = (id: string, takenAt: number, commitTimes: number[]) => ({
    id,
    snapshot: {sha256: 'x', bytes: 10, takenAt, offset: 0},
    walIndexes: [{index: 0, segments: commitTimes.map((commitTime) => ({commitTime}))}],
  })
  const contents = {
    meta: {},
    generations: [generation('g1', 1_000, [1_010, 1_020]), generation('g2', 2_000, [2_050])],
    sizes: {generations: {g1: 100, g2: 50}, artifacts: {files: 2, bytes: 7}},
    artifactKeys: [],
    unlisted: [],
    damaged: [
      {key: 'k', generation: 'g2', walIndex: 0, start: 1, why: 'a sidecar is cut short; nothing was restored.'},
    ],
  } as unknown as ReplicaContents

  it('--guid: asks the extension, reads the replica it names, and warns of a damaged sidecar', async () => {
    const asked: string[] = []
    const deps: Partial<CommandDeps> = {
      opsStatus: async (_transfer, guid) => {
        asked.push(`status ${guid}`)
        return {replica: {url: 's3://replicas/team-a', role: 'replicating', lagSeconds: 1.5}} as any
      },
      readReplica: async (url) => (asked.push(`read ${url}`), contents),
    }
    const result = await runInProcess(ReplicaStatus, ['--guid', GUID, '--json'], {env, deps})
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.deepEqual(asked, [`status ${GUID}`, 'read s3://replicas/team-a'])
    const {url, extension, contents: summary} = result.json!.result
    assert.equal(url, 's3://replicas/team-a')
    assert.equal(extension.role, 'replicating')
    assert.deepEqual(summary.window, {from: '1970-01-01T00:16:40.000Z', to: '1970-01-01T00:34:10.000Z'})
    assert.equal(summary.bytes, 157)
    assert.deepEqual(result.json!.warnings, ['a sidecar is cut short.'])
  })

  it('--guid with a replica that cannot be read from here: the extension view, the reason, exit 0', async () => {
    const deps: Partial<CommandDeps> = {
      opsStatus: async () => ({replica: {url: '/srv/replica', role: 'standby'}}) as any,
      readReplica: async () => {
        throw new Error('/srv/replica is not reachable from here')
      },
    }
    const result = await runInProcess(ReplicaStatus, ['--guid', GUID, '--json'], {env, deps})
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(result.json!.result.contentsError, '/srv/replica is not reachable from here')
  })
})
