import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  backupId,
  compareWithManifest,
  describeProblem,
  encodeValue,
  invalidManifest,
  unsafeEntryName,
  type BackupManifest,
} from '../../../src/core/backup/format.js'
import {selectRetention, type RetentionCandidate} from '../../../src/core/backup/retention.js'
import {UsageError} from '../../../src/errors.js'

const sha = (c: string) => c.repeat(64)

describe('backup format', () => {
  it('refuses tar entry names that escape or do not belong', () => {
    for (const [name, why] of [
      ['/etc/passwd', /absolute/],
      ['artifacts/../../x', /\.\./],
      ['artifacts/a\\..\\..\\x', /\.\./],
      ['artifacts/a//b.txt', /empty or "\." part/],
      ['artifacts/a/./b.txt', /empty or "\." part/],
      ['\\server\\x', /absolute/],
      ['other/file', /not under db\/ or artifacts\//],
      ['C:/x', /absolute/],
    ] as const) {
      assert.match(unsafeEntryName(name) ?? 'accepted', why, name)
    }
    for (const name of [
      'manifest.json',
      'db/runs.jsonl',
      'artifacts/1/abc/artifacts/model.pkl',
      'artifacts/twin/a\\b.txt',
    ])
      assert.equal(unsafeEntryName(name), undefined)
  })

  it('names every difference between an archive and its manifest', () => {
    const manifest = {
      files: [
        {path: 'db/a.jsonl', size: 3, sha256: sha('a')},
        {path: 'db/b.jsonl', size: 3, sha256: sha('b')},
        {path: 'db/c.jsonl', size: 3, sha256: sha('c')},
      ],
    } as BackupManifest
    const seen = new Map([
      ['db/a.jsonl', {size: 3, sha256: sha('a')}],
      ['db/b.jsonl', {size: 4, sha256: sha('b')}],
      ['db/c.jsonl', {size: 3, sha256: sha('d')}],
      ['db/x.jsonl', {size: 1, sha256: sha('e')}],
    ])
    assert.deepEqual(compareWithManifest(manifest, seen).map(describeProblem), [
      'db/b.jsonl has 4 bytes, the manifest says 3',
      'db/c.jsonl does not match its SHA-256 in the manifest',
      'db/x.jsonl is in the archive but not in the manifest',
    ])
    assert.deepEqual(
      compareWithManifest({files: [{path: 'db/z.jsonl', size: 1, sha256: sha('z')}]} as BackupManifest, new Map()).map(
        describeProblem,
      ),
      ['db/z.jsonl is listed in the manifest but missing from the archive'],
    )
  })

  it('refuses a manifest of another format or with an unsafe path', () => {
    assert.match(invalidManifest({format: 3, id: 'x', createdAt: 'y', files: []})!, /format 3 is not supported/)
    assert.match(
      invalidManifest({format: 2, id: 'x', createdAt: 'y', alembicRevision: 'abc', files: []})!,
      /must list db\/mlflow\.db/,
    )
    assert.match(
      invalidManifest({format: 1, id: 'x', createdAt: 'y', files: [{path: '../x', size: 1, sha256: sha('a')}]})!,
      /\.\./,
    )
    assert.equal(
      invalidManifest({format: 1, id: 'x', createdAt: 'y', files: [{path: 'db/a.jsonl', size: 1, sha256: sha('a')}]}),
      undefined,
    )
  })

  it('encodes values JSON cannot hold in the tagged form the restore loader decodes ($b, $i, $f)', () => {
    const values = [
      null,
      1,
      1.5,
      'text',
      Buffer.from([0, 255, 7]),
      2n ** 62n,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ]
    // templates/tools/restore_db.py reads these back: base64.b64decode, int(...) and float(...) of each string.
    assert.deepEqual(JSON.parse(JSON.stringify(values.map(encodeValue))), [
      null,
      1,
      1.5,
      'text',
      {$b: 'AP8H'},
      {$i: '4611686018427387904'},
      {$f: 'NaN'},
      {$f: 'Infinity'},
      {$f: '-Infinity'},
    ])
    assert.equal(encodeValue(42n), 42, 'safe bigints stay plain numbers')
  })

  it('makes IDs that sort by time', () => {
    assert.equal(backupId(new Date('2026-11-28T06:15:00.123Z'), 'ab12cd'), '20261128T061500Z-ab12cd')
  })
})

describe('backup retention', () => {
  const at = (iso: string, verified = true): RetentionCandidate => ({id: iso, createdAt: iso, verified})
  const kept = (backups: RetentionCandidate[], policy: Parameters<typeof selectRetention>[1]) =>
    selectRetention(backups, policy)
      .filter((d) => d.keep)
      .map((d) => d.id)
  const days = [
    '2026-11-28T06:00:00Z',
    '2026-11-28T01:00:00Z',
    '2026-11-27T06:00:00Z',
    '2026-11-26T06:00:00Z',
    '2026-11-20T06:00:00Z',
    '2026-11-02T06:00:00Z',
    '2026-10-15T06:00:00Z',
    '2026-09-01T06:00:00Z',
  ].map((d) => at(d))

  for (const [name, policy, expected] of [
    ['keep-last 2', {keepLast: 2}, ['2026-11-28T06:00:00Z', '2026-11-28T01:00:00Z']],
    [
      'keep-daily 3 takes the newest of each day',
      {keepDaily: 3},
      ['2026-11-28T06:00:00Z', '2026-11-27T06:00:00Z', '2026-11-26T06:00:00Z'],
    ],
    ['keep-weekly 2 (ISO weeks, Monday first)', {keepWeekly: 2}, ['2026-11-28T06:00:00Z', '2026-11-20T06:00:00Z']],
    ['keep-monthly 3', {keepMonthly: 3}, ['2026-11-28T06:00:00Z', '2026-10-15T06:00:00Z', '2026-09-01T06:00:00Z']],
    ['policies combine', {keepLast: 1, keepMonthly: 2}, ['2026-11-28T06:00:00Z', '2026-10-15T06:00:00Z']],
  ] as const) {
    it(name, () => assert.deepEqual(kept(days, policy), expected))
  }

  it('never drops the newest verified backup, even when the policy would', () => {
    const backups = [
      at('2026-11-28T06:00:00Z', false),
      at('2026-11-27T06:00:00Z', true),
      at('2026-11-26T06:00:00Z', true),
    ]
    const decisions = selectRetention(backups, {keepLast: 1})
    assert.deepEqual(
      decisions.filter((d) => d.keep).map((d) => d.id),
      ['2026-11-28T06:00:00Z', '2026-11-27T06:00:00Z'],
    )
    assert.deepEqual(decisions[1].reasons, ['newest verified'])
  })
})

describe('createBackup (core, with injected I/O)', async () => {
  const {createBackup} = await import('../../../src/core/backup/create.js')
  type Deps = Parameters<typeof createBackup>[0]
  /** Every port's members in one flat record, so that a test overrides one by name. */
  type Flat = Omit<Deps['source'], 'recover'> &
    Omit<Deps['repository'], 'stage' | 'abandon' | 'commit'> & {
      recoverSource: Deps['source']['recover']
      stageArchive: Deps['repository']['stage']
      abandonArchive: Deps['repository']['abandon']
      commitArchive: Deps['repository']['commit']
      scratch: Deps['archive']['scratch']
      writeArchive: Deps['archive']['write']
      appendHistory: Deps['history']['append']
      ping: Deps['ping']
      join: Deps['paths']['join']
    } & Deps['clock']
  const fakeDeps = (overrides: Partial<Flat> = {}) => {
    const events: string[] = []
    const flat: Flat = {
      recoverSource: async () => [],
      lock: async () => (events.push('lock'), async () => void events.push('unlock')),
      cleanUp: async () => [],
      scratch: async () => ({path: '/scratch', remove: async () => void events.push('scratch removed')}),
      exists: async () => true,
      snapshotSqlite: async () => void events.push('snapshot'),
      describeSnapshot: () => ({rowCounts: {experiments: 1, runs: 2}, alembicRevision: 'abc123', objects: []}),
      expectedSchema: async () => undefined,
      dropSnapshotObjects: async () => undefined,
      snapshotReferences: () => [],
      exportPostgres: async (url) => (
        events.push(`copy ${url}`),
        {rowCounts: {runs: 2}, alembicRevision: 'abc123', files: [], skipped: ['optuna_studies']}
      ),
      listArtifacts: async function* () {
        yield {name: 'artifacts/1/r/artifacts/model.txt', file: '/data/artifacts/1/r/artifacts/model.txt'}
      },
      readReferences: async () => [],
      databaseState: async () => undefined,
      liveSqlite: async () => undefined,
      artifactEntries: async function* () {
        yield {name: 'artifacts/1/r/artifacts/model.txt', file: '/data/artifacts/1/r/artifacts/model.txt'}
      },
      fetchConnectSnapshot: async () => ({
        db: '/remote/db/mlflow.db',
        artifacts: '/remote/artifacts',
        location: 'https://connect/content/g/',
      }),
      writeArchive: async (_output, sources, finish) => {
        const files = []
        for await (const source of sources) files.push({path: source.name, size: 3, sha256: 'a'.repeat(64)})
        events.push('archive')
        return {bytes: 99, manifest: finish(files)}
      },
      stageArchive: async (id) => `/repo/${id}.mlflowctl-backup.tar.gz`,
      abandonArchive: async () => void events.push('abandoned'),
      commitArchive: async (_manifest, staged) => (events.push('sidecar'), staged),
      appendHistory: async (event) => void events.push(`history ${event.action} ${event.result}`),
      ping: async (url) => void events.push(`ping ${url}`),
      join: (...parts) => parts.join('/'),
      now: () => new Date('2026-11-28T06:00:00Z'),
      randomId: () => 'abcdef',
      ...overrides,
    }
    const deps: Deps = {
      source: {
        recover: flat.recoverSource,
        exists: flat.exists,
        snapshotSqlite: flat.snapshotSqlite,
        describeSnapshot: flat.describeSnapshot,
        expectedSchema: flat.expectedSchema,
        dropSnapshotObjects: flat.dropSnapshotObjects,
        snapshotReferences: flat.snapshotReferences,
        exportPostgres: flat.exportPostgres,
        fetchConnectSnapshot: flat.fetchConnectSnapshot,
        listArtifacts: flat.listArtifacts,
        readReferences: flat.readReferences,
        databaseState: flat.databaseState,
        liveSqlite: flat.liveSqlite,
        artifactEntries: flat.artifactEntries,
      },
      // These cases are about archives; the snapshot path has its own cases below and in the integration suite.
      snapshots: {
        format: async (wanted) => wanted ?? 'archive',
        parent: async () => undefined,
        recordArchive: async () => undefined,
        write: async () => {
          throw new Error('not a snapshot case')
        },
      },
      repository: {
        lock: flat.lock,
        cleanUp: flat.cleanUp,
        stage: flat.stageArchive,
        abandon: flat.abandonArchive,
        commit: flat.commitArchive,
      },
      archive: {scratch: flat.scratch, write: flat.writeArchive},
      clock: {now: flat.now, randomId: flat.randomId},
      history: {append: flat.appendHistory},
      ping: flat.ping,
      paths: {join: flat.join},
    }
    return {deps, events}
  }
  const options = {
    source: {kind: 'app-data' as const, dir: '/data'},
    repo: '/repo',
    artifacts: 'all' as const,
    healthcheckUrl: 'https://hc.example/uuid',
    toolVersion: '0.1.0',
  }

  it('pings start then success, and releases the lock and the scratch space', async () => {
    const {deps, events} = fakeDeps()
    const result = await createBackup(deps, options)
    assert.deepEqual(events, [
      'ping https://hc.example/uuid/start',
      'lock',
      'snapshot',
      'archive',
      'sidecar',
      'history backup ok',
      'ping https://hc.example/uuid',
      'scratch removed',
      'unlock',
    ])
    assert.deepEqual(
      [result.id, result.path, result.rows, result.files, result.revision],
      ['20261128T060000Z-abcdef', '/repo/20261128T060000Z-abcdef.mlflowctl-backup.tar.gz', 3, 1, 'abc123'],
    )
  })

  it('pings fail and still releases everything when the archive cannot be written; a failed ping is only a warning', async () => {
    const {deps, events} = fakeDeps({writeArchive: async () => Promise.reject(new Error('disk full'))})
    await assert.rejects(createBackup(deps, options), /disk full/)
    // The failure is in the history, after everything was released.
    assert.deepEqual(events.slice(-4), [
      'ping https://hc.example/uuid/fail',
      'scratch removed',
      'unlock',
      'history backup failed',
    ])
    const flaky = fakeDeps({ping: async () => Promise.reject(new Error('no route'))})
    const result = await createBackup(flaky.deps, options)
    assert.deepEqual(result.warnings, [
      'healthcheck ping /start failed: no route',
      'healthcheck ping (success) failed: no route',
    ])
  })

  it('refuses a source that is not an MLflow database (exit 3, naming what it found), after the lock and with a /fail ping; a safety backup takes it anyway', async () => {
    for (const [rowCounts, found] of [
      [{}, /no tables at all/],
      [{notes: 3, users: 1}, /2 tables but no alembic_version \(notes, users\)/],
    ] as Array<[Record<string, number>, RegExp]>) {
      const {deps, events} = fakeDeps({describeSnapshot: () => ({rowCounts, alembicRevision: null, objects: []})})
      const error = await createBackup(deps, options).then(
        () => undefined,
        (e: unknown) => e as {code: string; exit: number; message: string},
      )
      assert.equal(error?.code, 'SOURCE_NOT_MLFLOW')
      assert.equal(error?.exit, 3)
      assert.match(error!.message, found)
      assert.ok(
        !events.includes('archive') && !events.includes('history backup ok'),
        'nothing archived, nothing recorded as ok',
      )
      assert.deepEqual(events.slice(-4), [
        'ping https://hc.example/uuid/fail',
        'scratch removed',
        'unlock',
        'history backup failed',
      ])
    }
    const safety = fakeDeps({describeSnapshot: () => ({rowCounts: {}, alembicRevision: null, objects: []})})
    assert.equal((await createBackup(safety.deps, {...options, requireMlflow: false})).revision, null)
  })

  it('recovers the source and cleans the repository (under the lock) before it reads, and reports both as warnings', async () => {
    const {deps, events} = fakeDeps({
      recoverSource: async () => (events.push('recover'), ['undid an interrupted restore of /data/mlflow.db']),
      cleanUp: async () => (events.push('clean'), ['removed x.partial (5 bytes), left by a killed run']),
    })
    const result = await createBackup(deps, options)
    assert.deepEqual(events.slice(0, 4), ['ping https://hc.example/uuid/start', 'recover', 'lock', 'clean'])
    assert.deepEqual(result.warnings, [
      'undid an interrupted restore of /data/mlflow.db',
      'removed x.partial (5 bytes), left by a killed run',
    ])
  })

  it('a PostgreSQL source is exported in one go (no SQLite snapshot), located by its redacted URL, and foreign tables are named', async () => {
    const {deps, events} = fakeDeps()
    let manifest: {source: {location: string; engine: string}} | undefined
    const writeArchive = deps.archive.write
    deps.archive.write = async (output, sources, finish) =>
      writeArchive(output, sources, (files) => (manifest = finish(files) as never))
    const result = await createBackup(deps, {
      ...options,
      source: {kind: 'postgresql', url: 'postgresql://u:secret@db/mlflow', display: 'postgresql://u:***@db/mlflow'},
    })
    assert.ok(events.includes('copy postgresql://u:secret@db/mlflow') && !events.includes('snapshot'))
    assert.deepEqual(manifest!.source, {
      kind: 'postgresql',
      location: 'postgresql://u:***@db/mlflow',
      engine: 'postgresql',
    })
    assert.match(result.warnings.join(), /left out 1 objects that are not MLflow's: optuna_studies/)
  })

  it('--artifacts referenced keeps only files under locations the rows point at (orphans stay out)', async () => {
    const run = 'a'.repeat(32)
    const {deps} = fakeDeps({
      listArtifacts: async function* (_source, include = () => true) {
        for (const name of [
          `1/${run}/artifacts/model.txt`,
          `1/${'f'.repeat(32)}/artifacts/stray.txt`,
          '1/models/m-1/artifacts/MLmodel',
        ])
          if (include(name)) yield {name: `artifacts/${name}`, file: '/x'}
      },
      snapshotReferences: () => [
        `mlflow-artifacts:/1/${run}/artifacts`,
        'mlflow-artifacts:/1/models/m-1/artifacts',
        's3://elsewhere/x',
      ],
    })
    let manifest: {artifacts: {mode: string; files: number}; files: Array<{path: string}>} | undefined
    const writeArchive = deps.archive.write
    deps.archive.write = async (output, sources, finish) =>
      writeArchive(output, sources, (files) => (manifest = finish(files) as never))
    await createBackup(deps, {...options, artifacts: 'referenced'})
    assert.deepEqual(
      manifest!.files.map((f) => f.path).filter((p) => p.startsWith('artifacts/')),
      [`artifacts/1/${run}/artifacts/model.txt`, 'artifacts/1/models/m-1/artifacts/MLmodel'],
    )
    assert.deepEqual([manifest!.artifacts.mode, manifest!.artifacts.files], ['referenced', 2])
    const elsewhere = fakeDeps({snapshotReferences: () => ['s3://bucket/1/abc/artifacts']})
    await assert.rejects(
      createBackup(elsewhere.deps, {...options, artifacts: 'referenced'}),
      (e: unknown) => e instanceof UsageError && e.code === 'ARTIFACTS_NOT_PROXIED',
    )
  })

  it('refuses a directory without mlflow.db before taking the lock', async () => {
    const {deps, events} = fakeDeps({exists: async () => false})
    await assert.rejects(
      createBackup(deps, options),
      (e: unknown) => e instanceof UsageError && e.code === 'SOURCE_NOT_FOUND',
    )
    assert.ok(!events.includes('lock'))
  })
})

describe('PostgreSQL COPY text decoding', async () => {
  const {sqliteValueOfCopyField, pgKind, unescapeCopyField} = await import('../../../src/core/backup/pg-text.js')
  it('undoes every COPY escape', () => {
    for (const [raw, expected] of [
      ['a\\tb', 'a\tb'],
      ['line\\none', 'line\none'],
      ['back\\\\slash', 'back\\slash'],
      ['\\101\\x42', 'AB'],
      ['plain', 'plain'],
      ['\\q', 'q'],
    ]) {
      assert.equal(unescapeCopyField(raw), expected, raw)
    }
  })
  it('types integers (big ones exact), floats (NaN and infinities), booleans (1/0), bytea and NULL for SQLite', () => {
    const kinds = ['bigint', 'double precision', 'boolean', 'bytea', 'character varying', 'integer'].map(pgKind)
    const decode = (line: string) => line.split('\t').map((field, index) => sqliteValueOfCopyField(field, kinds[index]))
    assert.deepEqual(decode('9007199254740993\tNaN\tt\t\\\\x0aff\tx\\ty\t\\N'), [
      9007199254740993n,
      Number.NaN,
      1,
      Buffer.from([10, 255]),
      'x\ty',
      null,
    ])
    assert.deepEqual(decode('1\t-Infinity\tf\t\\\\x\t\t7'), [1, -Infinity, 0, Buffer.alloc(0), '', 7])
  })
})

describe('selectMlflowTables', async () => {
  const {selectMlflowTables} = await import('../../../src/core/backup/tables.js')
  it('takes the known tables and any table hanging off them; names the rest', () => {
    const result = selectMlflowTables(['runs', 'experiments', 'future_run_notes', 'optuna_studies', 'optuna_trials'], {
      future_run_notes: ['runs'],
      optuna_trials: ['optuna_studies'],
    })
    assert.deepEqual(result, {
      taken: ['runs', 'experiments', 'future_run_notes'],
      skipped: ['optuna_studies', 'optuna_trials'],
    })
  })
})

describe('backup verify --deep (core)', async () => {
  const {artifactFindings, deepVerify, proxiedPath} = await import('../../../src/core/backup/deep-verify.js')
  const run = 'a'.repeat(32)
  it('maps proxied URIs (with or without an authority) into the store; other schemes are not checkable', () => {
    assert.equal(proxiedPath('mlflow-artifacts:/1/abc/artifacts'), '1/abc/artifacts')
    assert.equal(proxiedPath('mlflow-artifacts://host:5000/1/abc/artifacts/'), '1/abc/artifacts')
    assert.equal(proxiedPath('s3://bucket/1/abc'), undefined)
  })
  it('finds model versions whose artifacts are absent (direct or runs:/) and run directories without a run', () => {
    const findings = artifactFindings(
      {
        runs: [{runId: run, artifactUri: `mlflow-artifacts:/1/${run}/artifacts`}],
        modelVersions: [
          {name: 'ok', version: '1', source: `mlflow-artifacts:/1/${run}/artifacts`},
          {name: 'via-run', version: '2', source: `runs:/${run}/model`},
          {name: 'elsewhere', version: '1', source: 's3://other/model'},
        ],
      },
      [`1/${run}/artifacts/model.txt`, `1/${'b'.repeat(32)}/artifacts/x`, '1/models/m-123/artifacts/MLmodel'],
    )
    assert.deepEqual(findings, {
      missing: [`model via-run version 2: runs:/${run}/model`],
      orphans: [`1/${'b'.repeat(32)}`],
      unchecked: 1,
      uncheckedReferences: ['model elsewhere version 1: s3://other/model'],
    })
  })
  it('fails on a row count that differs from the manifest, an integrity problem, and always removes its scratch space', async () => {
    let removed = false
    const manifest = {
      id: 'b1',
      alembicRevision: 'rev',
      rowCounts: {runs: 2, alembic_version: 1},
      artifacts: {mode: 'none'},
      files: [],
    }
    const deps = {
      scratch: async () => ({path: '/s', remove: async () => void (removed = true)}),
      expectedManifest: async () => manifest as never,
      extractVerified: async () => manifest as never,
      prepareDatabase: async () => ({
        load: async () => ({tables: 1, rows: 1}),
        commit: async () => undefined,
        abort: async () => undefined,
      }),
      inspect: () => ({
        integrity: ['page 3 is never used'],
        foreignKeyViolations: [],
        rowCounts: {runs: 1, alembic_version: 1},
        runs: [],
        modelVersions: [],
        objects: ['runs', 'alembic_version', 'not_mlflows'].map((name) => ({
          type: 'table' as const,
          name,
          table: name,
          sql: null,
        })),
      }),
      expectedSchema: async (revision: string) => ({
        revision,
        tables: new Set(['runs', 'alembic_version', 'experiments']),
        triggers: new Map(),
      }),
      join: (...parts: string[]) => parts.join('/'),
    }
    await assert.rejects(
      deepVerify(deps, '/a.tar.gz'),
      (error: Error & {code?: string}) =>
        error.code === 'BACKUP_DEEP_FAILED' &&
        /table not_mlflows is not MLflow's .*; MLflow's table experiments is missing; integrity: page 3 is never used; runs holds 1 rows, the manifest says 2/.test(
          error.message,
        ),
    )
    assert.ok(removed)
  })
})

describe('loadPrepared', async () => {
  const {loadPrepared} = await import('../../../src/core/backup/prepared-database.js')
  const database = (events: string[], failAt?: string) => ({
    load: async () => {
      events.push('load')
      if (failAt === 'load') throw new Error('COPY failed')
      return {tables: 2, rows: 5}
    },
    commit: async () => {
      events.push('commit')
      if (failAt === 'commit') throw new Error('swap failed')
    },
    abort: async () => void events.push('abort'),
  })
  it('loads, lets the caller wrap the commit, and commits', async () => {
    const events: string[] = []
    const loaded = await loadPrepared(Promise.resolve(database(events)), {tableFiles: '/db'}, async (commit) => {
      events.push('artifacts swapped')
      await commit()
    })
    assert.deepEqual(loaded, {tables: 2, rows: 5})
    assert.deepEqual(events, ['load', 'artifacts swapped', 'commit'])
  })
  it('aborts when the load or the commit fails, and reports that failure', async () => {
    for (const failAt of ['load', 'commit']) {
      const events: string[] = []
      await assert.rejects(loadPrepared(Promise.resolve(database(events, failAt)), {sqliteFile: '/f'}), /failed/)
      assert.equal(events.at(-1), 'abort', failAt)
    }
  })
  it('a preparation that failed (started long before) surfaces its own error', async () => {
    const failed = Promise.reject(new Error('Another restore into this database is running.'))
    failed.catch(() => undefined)
    await assert.rejects(loadPrepared(failed, {tableFiles: '/db'}), /Another restore/)
  })
})

describe('history locations', () => {
  it('names local paths as file:// URLs once, and the others as they are shown', async () => {
    const {historyLocation} = await import('../../../src/core/backup/create.js')
    assert.equal(historyLocation({kind: 'sqlite', path: '/srv/x/mlflow.db'}), 'file:///srv/x/mlflow.db')
    assert.equal(historyLocation({kind: 'app-data', dir: '/srv/x'}), 'file:///srv/x')
    assert.equal(
      historyLocation({kind: 'postgresql', url: 'postgresql://u:p@h/db', display: 'postgresql://u:***@h/db'}),
      'postgresql://u:***@h/db',
    )
    assert.equal(historyLocation({kind: 'connect', guid: 'g'}), 'connect:g')
  })
})

describe('decideEncryption', async () => {
  const {decideEncryption} = await import('../../../src/core/backup/create.js')
  it('encrypts whenever a passphrase is given in any form, and only then', () => {
    // Given each combination of --encrypt/--no-encrypt/neither and where a passphrase came from
    assert.equal(decideEncryption(undefined, '--passphrase-file'), true, 'a passphrase file alone means encrypt')
    assert.equal(decideEncryption(undefined, 'MLFLOWCTL_BACKUP_PASSPHRASE'), true, 'so does the variable')
    assert.equal(decideEncryption(true, 'MLFLOWCTL_BACKUP_PASSPHRASE'), true)
    assert.equal(decideEncryption(undefined, undefined), false)
    assert.equal(
      decideEncryption(false, 'MLFLOWCTL_BACKUP_PASSPHRASE'),
      false,
      '--no-encrypt wins over the environment',
    )
  })
  it('refuses contradictions and a missing passphrase', () => {
    assert.throws(() => decideEncryption(false, '--passphrase-file'), {code: 'ENCRYPT_CONFLICT', exit: 2})
    assert.throws(() => decideEncryption(true, undefined), {code: 'PASSPHRASE_REQUIRED', exit: 3})
  })
})
