// backup create/list/verify/prune against an app-data directory that real MLflow (behind `dev up`) writes
// to while the backup runs; corruption and tar attacks are made for real, on real archives.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import {hostname} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'

import Database from 'better-sqlite3'
import pg from 'pg'
import * as tar from 'tar'

import {runCli, tempDir, type CliResult} from '../support/cli.js'
import {rewriteArchive} from '../support/archives.js'
import {logRichRun, logRun, readRuns, serverSnapshot} from '../support/mlflow-client.js'
import {createPgDatabase, NO_PG, NO_VENVS, pgBaseUrl, requireService, testVenvs} from '../support/services.js'

// These cases are about self-contained archives (--format archive); snapshots have backup-snapshots.test.ts.
process.env.MLFLOWCTL_BACKUP_FORMAT ??= 'archive'

const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const bundle = join(tempDir(), 'ext')
const repo = tempDir('backup-repo-')
let dataDir = ''
let endpoint: {trackingUri: string; apiKey: string} | undefined
const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

const backup = (args: string[], extra: Record<string, string> = {}) =>
  runCli(['backup', ...args, '--json'], {env: extra})
const archives = () => readdirSync(repo).filter((name) => name.endsWith('.mlflowctl-backup.tar.gz'))

describe('mlflowctl backup (local repository, app-data source)', () => {
  before(async () => {
    if (!venv) return
    assert.equal((await runCli(['init', bundle, '--mlflow-version', venv.mlflowVersion])).code, 0)
    const up = await runCli(['dev', 'up', bundle, '--json'])
    assert.equal(up.code, 0, up.stdout)
    endpoint = up.json!.result
    dataDir = up.json!.result.dataDir
    for (const name of ['first', 'second'])
      await logRun({python: venv.python, trackingUri: endpoint!.trackingUri, token: endpoint!.apiKey}, name)
    await logRichRun({python: venv.python, trackingUri: endpoint!.trackingUri, token: endpoint!.apiKey}, 'rich')
  })
  after(() => runCli(['dev', 'down', bundle]))

  it('backs up while MLflow keeps writing: a consistent snapshot with every committed run, private files, listed and verified', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // A writer logs metrics through the real server during the backup.
    let writing = true
    const writer = (async () => {
      let step = 0
      while (writing) {
        await fetch(`${endpoint!.trackingUri}/api/2.0/mlflow/runs/search`, {
          method: 'POST',
          headers: {Authorization: `Key ${endpoint!.apiKey}`, 'Content-Type': 'application/json'},
          body: JSON.stringify({experiment_ids: ['1'], max_results: 1}),
        }).then((r) => r.arrayBuffer())
        step++
      }
      return step
    })()
    const created = await backup(['create', '--source', dataDir, '--repo', repo])
    writing = false
    await writer
    assert.equal(created.code, 0, `${created.stdout}\n${created.stderr}`)
    const result = created.json!.result
    assert.match(result.id, /^\d{8}T\d{6}Z-[0-9a-f]{6}$/)
    assert.ok(result.files >= 2, "the two runs' artifacts")
    assert.ok(existsSync(result.path) && (statSync(result.path).mode & 0o777) === 0o600, 'the archive is private')
    assert.deepEqual(
      readdirSync(repo).filter((n) => n.endsWith('.partial')),
      [],
    )

    // The archive's runs table holds every run committed before the snapshot.
    const live = new Database(join(dataDir, 'mlflow.db'), {readonly: true})
    const liveRuns = (live.prepare('SELECT count(*) AS n FROM runs').get() as {n: number}).n
    live.close()
    const runsEntry: string[] = []
    await tar.t({file: result.path, onReadEntry: (entry) => runsEntry.push(entry.path)})
    // Format 2: an app-data source is archived as the SQLite snapshot file itself.
    assert.ok(runsEntry.includes('db/mlflow.db') && runsEntry.at(-1) === 'manifest.json', 'manifest.json comes last')
    const manifest = JSON.parse(readFileSync(join(repo, `${result.id}.manifest.json`), 'utf8'))
    assert.equal(manifest.format, 2)
    assert.equal(manifest.rowCounts.runs, liveRuns)
    assert.equal(manifest.alembicRevision, result.revision)
    assert.ok(!JSON.stringify(manifest).includes(endpoint!.apiKey))

    const listed = await backup(['list', '--repo', repo])
    assert.equal(listed.json!.result.backups[0].id, result.id)
    assert.equal(listed.json!.result.backups[0].verifiedAt, null)
    const verified = await backup(['verify', result.id, '--repo', repo])
    assert.equal(verified.code, 0, verified.stdout)
    assert.ok((await backup(['list', '--repo', repo])).json!.result.backups[0].verifiedAt)
  })

  it('rejects corruption and tar attacks, each with a specific reason (exit 6)', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const original = join(repo, archives()[0])
    const work = tempDir('backup-corrupt-')
    const verifyFile = async (file: string): Promise<CliResult> => backup(['verify', file])
    const expectCorrupt = async (file: string, reason: RegExp) => {
      const result = await verifyFile(file)
      assert.equal(result.code, 6, `${file}: ${result.stdout}`)
      assert.equal(result.json!.error!.code, 'BACKUP_CORRUPT')
      assert.match(result.json!.error!.message, reason)
    }
    // A flipped bit inside the compressed stream.
    const flipped = join(work, 'flipped.tar.gz')
    const bytes = readFileSync(original)
    bytes[Math.floor(bytes.length / 2)] ^= 0x01
    writeFileSync(flipped, bytes)
    await expectCorrupt(flipped, /damaged|does not match its SHA-256|truncated/)
    // Truncated.
    const truncated = join(work, 'truncated.tar.gz')
    copyFileSync(original, truncated)
    truncateSync(truncated, Math.floor(statSync(original).size * 0.6))
    await expectCorrupt(truncated, /truncated/)
    // A changed table (same size), a missing file, an extra file, an edited manifest, path traversal, a symlink.
    const cases: Array<[string, Parameters<typeof rewriteArchive>[2], RegExp]> = [
      [
        'changed',
        (name, data) => {
          if (name !== 'db/mlflow.db') return null
          const changed = Buffer.from(data)
          changed[changed.length - 100] ^= 0xff // same size, one byte changed
          return [{name, data: changed}]
        },
        /db\/mlflow\.db does not match its SHA-256/,
      ],
      [
        'missing',
        (name) => (name === 'db/mlflow.db' ? [] : null),
        /db\/mlflow\.db is listed in the manifest but missing/,
      ],
      [
        'extra',
        (name, data) =>
          name === 'manifest.json'
            ? [
                {name: 'artifacts/planted.txt', data: Buffer.from('x')},
                {name, data},
              ]
            : null,
        /artifacts\/planted\.txt is in the archive but not in the manifest/,
      ],
      [
        'manifest',
        (name, data) =>
          name === 'manifest.json'
            ? [{name, data: Buffer.from(data.toString().replace(/"rowCounts"/, '"format": 7, "rowCounts"'))}]
            : null,
        /format 7 is not supported/,
      ],
      [
        'traversal',
        (name, data) =>
          name === 'manifest.json'
            ? [
                {name: 'artifacts/../../evil.sh', data: Buffer.from('x')},
                {name, data},
              ]
            : null,
        /climbs out of the archive/,
      ],
      [
        'symlink',
        (name, data) =>
          name === 'manifest.json'
            ? [
                {name: 'artifacts/link', data: Buffer.alloc(0), type: 'symlink', linkname: '/etc/passwd'},
                {name, data},
              ]
            : null,
        /is a symlink, and a backup holds regular files only/,
      ],
      ['no-manifest', (name) => (name === 'manifest.json' ? [] : null), /no manifest\.json/],
    ]
    for (const [label, edit, reason] of cases) {
      const file = join(work, `${label}.tar.gz`)
      await rewriteArchive(original, file, edit)
      await expectCorrupt(file, reason)
    }
  })

  it('a backup killed mid-way leaves nothing that list would show; a held lock refuses a second run; a dead holder is taken over', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const killedRepo = tempDir('backup-killed-')
    // Enough artifact bytes that the archive is still being written when the process is killed.
    const big = tempDir('backup-big-')
    copyFileSync(join(dataDir, 'mlflow.db'), join(big, 'mlflow.db'))
    const artifacts = join(big, 'artifacts')
    mkdirSync(artifacts)
    for (let i = 0; i < 6; i++) writeFileSync(join(artifacts, `blob-${i}.bin`), randomBytes(24 * 1024 * 1024))
    const child = spawn(process.execPath, [RUN, 'backup', 'create', '--source', big, '--repo', killedRepo], {
      stdio: 'ignore',
    })
    for (let i = 0; i < 200 && !readdirSync(killedRepo).some((n) => n.endsWith('.partial')); i++)
      await new Promise((r) => setTimeout(r, 50))
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    assert.deepEqual(
      (await backup(['list', '--repo', killedRepo])).json!.result.backups,
      [],
      'a killed run leaves no listed backup',
    )

    // The killed run's lock (its process is gone) is taken over by the next run, with a warning.
    const next = await backup(['create', '--source', big, '--repo', killedRepo, '--artifacts', 'none'])
    assert.equal(next.code, 0, next.stdout)
    assert.ok(
      next.json!.warnings!.some((w: string) => /took over a stale lock/.test(w)),
      JSON.stringify(next.json!.warnings),
    )

    // A live holder: the second run is refused with exit 5.
    writeFileSync(
      join(killedRepo, '.mlflowctl-backup.lock'),
      JSON.stringify({pid: process.pid, host: hostname(), startedAt: new Date().toISOString()}),
    )
    const refused = await backup(['create', '--source', big, '--repo', killedRepo, '--artifacts', 'none'])
    assert.equal(refused.code, 5)
    assert.equal(refused.json!.error!.code, 'REPO_LOCKED')
    symlinkSync('/nonexistent', join(killedRepo, 'unrelated-symlink')) // an unrelated file never confuses list
    assert.equal((await backup(['list', '--repo', killedRepo])).json!.result.backups.length, 1)
  })

  it('prune prints its plan, deletes only with --yes, and keeps the newest verified backup', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const pruneRepo = tempDir('backup-prune-')
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const made = await backup(['create', '--source', dataDir, '--repo', pruneRepo, '--artifacts', 'none'])
      assert.equal(made.code, 0, made.stdout)
      ids.push(made.json!.result.id)
      await new Promise((r) => setTimeout(r, 1100)) // distinct creation seconds
    }
    assert.equal((await backup(['verify', ids[0], '--repo', pruneRepo])).code, 0)
    const plan = await backup(['prune', '--repo', pruneRepo, '--keep-last', '1'])
    assert.equal(plan.code, 0)
    assert.deepEqual(
      plan.json!.result.remove.map((b: {id: string}) => b.id),
      [ids[1]],
    )
    assert.equal(plan.json!.result.deleted, false)
    assert.equal(readdirSync(pruneRepo).filter((n) => n.endsWith('.tar.gz')).length, 3, 'nothing deleted without --yes')
    const applied = await backup(['prune', '--repo', pruneRepo, '--keep-last', '1', '--yes'])
    assert.equal(applied.json!.result.deleted, true)
    assert.deepEqual(
      (await backup(['list', '--repo', pruneRepo])).json!.result.backups.map((b: {id: string}) => b.id).sort(),
      [ids[0], ids[2]].sort(),
    )
    const empty = await backup(['prune', '--repo', pruneRepo])
    assert.equal(empty.code, 2)
    assert.equal(empty.json!.error!.code, 'NO_RETENTION_POLICY')
  })

  it('restores into an app-data directory and into PostgreSQL with IDs kept: a real MLflow server answers the same and serves the same artifacts', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const made = await backup(['create', '--source', dataDir, '--repo', repo])
    assert.equal(made.code, 0, made.stdout)
    const id = made.json!.result.id
    const original = {python: venv!.python, trackingUri: endpoint!.trackingUri, token: endpoint!.apiKey}
    const runIds = (
      JSON.parse(
        await (
          await fetch(`${endpoint!.trackingUri}/api/2.0/mlflow/runs/search`, {
            method: 'POST',
            headers: {Authorization: `Key ${endpoint!.apiKey}`, 'Content-Type': 'application/json'},
            body: JSON.stringify({experiment_ids: ['1', '2'], max_results: 50}),
          })
        ).text(),
      ).runs as Array<{info: {run_id: string}}>
    ).map((r) => r.info.run_id)
    assert.ok(runIds.length >= 2)

    // 1. Into a fresh app-data directory.
    const appData = join(tempDir('restore-app-'), 'data')
    const intoDir = await backup(['restore', id, '--repo', repo, '--to', appData])
    assert.equal(intoDir.code, 0, `${intoDir.stdout}\n${intoDir.stderr}`)
    assert.equal(intoDir.json!.result.revision, made.json!.result.revision)
    // 2. Into an empty PostgreSQL database, artifacts beside it.
    const pgUrl = await createPgDatabase(`mlflow_restore_${id.slice(-6)}`)
    const pgArtifacts = tempDir('restore-pg-artifacts-')
    const intoPg = await backup(['restore', id, '--repo', repo, '--to', pgUrl, '--artifacts-to', pgArtifacts])
    assert.equal(intoPg.code, 0, `${intoPg.stdout}\n${intoPg.stderr}`)
    assert.ok(!intoPg.stdout.includes('mlflowctl-ci'), 'the database password is masked')
    // Restoring again into the (now non-empty) PostgreSQL database is refused, and changes nothing.
    const again = await backup(['restore', id, '--repo', repo, '--to', pgUrl])
    assert.equal(again.json!.error!.code, 'TARGET_NOT_EMPTY')

    for (const [label, env] of [
      ['app-data', [`MLFLOW_DATA_DIR=${appData}`]],
      ['postgresql', [`MLFLOW_BACKEND_STORE_URI=${pgUrl}`, `MLFLOW_ARTIFACTS_DESTINATION=${pgArtifacts}`]],
    ] as const) {
      const restoredBundle = join(tempDir(), `restored-${label}`)
      assert.equal((await runCli(['init', restoredBundle, '--mlflow-version', venv!.mlflowVersion])).code, 0)
      const up = await runCli(['dev', 'up', restoredBundle, '--json', ...env.flatMap((pair) => ['-E', pair])])
      t.after(() => runCli(['dev', 'down', restoredBundle]))
      assert.equal(up.code, 0, `${label}: ${up.stdout}`)
      const restored = {python: venv!.python, trackingUri: up.json!.result.trackingUri, token: up.json!.result.apiKey}
      const [before, after] = await Promise.all([readRuns(original, runIds), readRuns(restored, runIds)])
      assert.equal(after.length, runIds.length)
      for (const [index, runId] of runIds.entries())
        assert.deepEqual(after[index], before[index], `${label}: run ${runId} differs after restore`)
      // Sequences moved past the restored IDs: a new experiment does not collide.
      const created = await fetch(`${up.json!.result.trackingUri}/api/2.0/mlflow/experiments/create`, {
        method: 'POST',
        headers: {Authorization: `Key ${up.json!.result.apiKey}`, 'Content-Type': 'application/json'},
        body: JSON.stringify({name: `after-restore-${label}`}),
      })
      assert.equal(created.status, 200, await created.text())
    }
  })

  it("PostgreSQL source: one snapshot of MLflow's tables only; PG→PG and PG→SQLite restores show the same runs, histories, artifacts, models and traces; --force over PostgreSQL", async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS) || !requireService(t, Boolean(pgBaseUrl()), NO_PG)) return
    const original = await serverSnapshot({
      python: venv!.python,
      trackingUri: endpoint!.trackingUri,
      token: endpoint!.apiKey,
    })
    const rich = original.experiments.find((e: {name: string}) => e.name === 'rich')
    assert.equal(rich.runs[0].history.loss.length, 5, 'the metric history is in the snapshot')
    assert.equal(original.models.length, 1)
    if (venv!.mlflowVersion.startsWith('3.')) assert.equal(rich.traces.length, 1, 'the trace is in the snapshot')

    // The PostgreSQL source: the app-data backup restored into it, plus another application's table.
    const made = await backup(['create', '--source', dataDir, '--repo', repo])
    const sourceUrl = await createPgDatabase('mlflow_backup_source')
    const sourceArtifacts = tempDir('pg-source-artifacts-')
    const seeded = await backup([
      'restore',
      made.json!.result.id,
      '--repo',
      repo,
      '--to',
      sourceUrl,
      '--artifacts-to',
      sourceArtifacts,
    ])
    assert.equal(seeded.code, 0, `${seeded.stdout}\n${seeded.stderr}`)
    const client = new pg.Client({connectionString: sourceUrl})
    await client.connect()
    await client.query(
      "CREATE TABLE optuna_studies (study_id int PRIMARY KEY, name text); INSERT INTO optuna_studies VALUES (1, 'not mlflow')",
    )
    await client.end()

    const pgRepo = tempDir('pg-repo-')
    const fromPg = await backup([
      'create',
      '--source',
      sourceUrl,
      '--artifacts-source',
      sourceArtifacts,
      '--repo',
      pgRepo,
    ])
    assert.equal(fromPg.code, 0, `${fromPg.stdout}\n${fromPg.stderr}`)
    assert.ok(
      fromPg.json!.warnings!.some((w: string) => /optuna_studies/.test(w)),
      'the foreign table is named as left out',
    )
    assert.ok(!`${fromPg.stdout}${fromPg.stderr}`.includes('mlflowctl-ci'), 'the password is masked')
    const manifest = JSON.parse(readFileSync(join(pgRepo, `${fromPg.json!.result.id}.manifest.json`), 'utf8'))
    assert.equal(manifest.source.engine, 'postgresql')
    // Format 2 of a PostgreSQL source: each table's COPY text, as the server wrote it.
    assert.equal(manifest.format, 2)
    assert.ok(
      manifest.files.some((file: {path: string}) => file.path === 'db/runs.copy'),
      'runs as COPY text',
    )
    assert.ok(!JSON.stringify(manifest).includes('mlflowctl-ci') && manifest.rowCounts.optuna_studies === undefined)
    assert.deepEqual(
      manifest.rowCounts,
      JSON.parse(readFileSync(join(repo, `${made.json!.result.id}.manifest.json`), 'utf8')).rowCounts,
      'every table, every row',
    )
    assert.equal((await backup(['verify', fromPg.json!.result.id, '--repo', pgRepo])).code, 0)

    const pgTarget = await createPgDatabase('mlflow_backup_pg_target')
    const pgTargetArtifacts = tempDir('pg-target-artifacts-')
    const appData = join(tempDir('pg-to-sqlite-'), 'data')
    for (const args of [
      ['--to', pgTarget, '--artifacts-to', pgTargetArtifacts],
      ['--to', appData],
    ]) {
      const restored = await backup(['restore', fromPg.json!.result.id, '--repo', pgRepo, ...args])
      assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`)
    }
    for (const [label, env] of [
      ['pg→pg', [`MLFLOW_BACKEND_STORE_URI=${pgTarget}`, `MLFLOW_ARTIFACTS_DESTINATION=${pgTargetArtifacts}`]],
      ['pg→sqlite', [`MLFLOW_DATA_DIR=${appData}`]],
    ] as const) {
      const restoredBundle = join(tempDir(), `restored-${label.replace('→', '-')}`)
      assert.equal((await runCli(['init', restoredBundle, '--mlflow-version', venv!.mlflowVersion])).code, 0)
      const up = await runCli(['dev', 'up', restoredBundle, '--json', ...env.flatMap((pair) => ['-E', pair])])
      t.after(() => runCli(['dev', 'down', restoredBundle]))
      assert.equal(up.code, 0, `${label}: ${up.stdout}`)
      const after = await serverSnapshot({
        python: venv!.python,
        trackingUri: up.json!.result.trackingUri,
        token: up.json!.result.apiKey,
      })
      // Experiments created by the earlier restore test exist only on their own servers.
      assert.deepEqual(after, original, `${label}: the restored server shows different data`)
    }

    // Over a PostgreSQL database with data: refused without --force; with it, a safety backup first. A table of
    // another application that references MLflow's makes clearing fail: the target stays as it was.
    const counts = async () => {
      const db = new pg.Client({connectionString: pgTarget})
      await db.connect()
      const {rows} = await db.query(
        'SELECT (SELECT count(*) FROM runs)::int AS runs, (SELECT count(*) FROM metrics)::int AS metrics, (SELECT count(*) FROM model_versions)::int AS versions',
      )
      await db.end()
      return rows[0]
    }
    const expected = await counts()
    assert.equal(
      (await backup(['restore', fromPg.json!.result.id, '--repo', pgRepo, '--to', pgTarget])).json!.error!.code,
      'TARGET_NOT_EMPTY',
    )
    const blocker = new pg.Client({connectionString: pgTarget})
    await blocker.connect()
    await blocker.query('CREATE TABLE audit_notes (run_uuid varchar(32) REFERENCES runs (run_uuid))')
    const blocked = await backup([
      'restore',
      fromPg.json!.result.id,
      '--repo',
      pgRepo,
      '--to',
      pgTarget,
      '--force',
      '--yes',
    ])
    assert.notEqual(blocked.code, 0, blocked.stdout)
    assert.match(blocked.json!.error!.message, /unchanged/)
    assert.deepEqual(await counts(), expected)
    await blocker.query('DROP TABLE audit_notes')
    await blocker.end()
    const forced = await backup([
      'restore',
      fromPg.json!.result.id,
      '--repo',
      pgRepo,
      '--to',
      pgTarget,
      '--force',
      '--yes',
    ])
    assert.equal(forced.code, 0, `${forced.stdout}\n${forced.stderr}`)
    assert.ok(forced.json!.result.safetyBackup)
    assert.deepEqual(await counts(), expected)
  })

  it('verify --deep restores into a scratch SQLite: a sound backup passes; an orphan run directory warns; a model version whose artifacts are gone fails (exit 6)', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const made = await backup(['create', '--source', dataDir, '--repo', repo])
    const sound = await backup(['verify', made.json!.result.id, '--repo', repo, '--deep'])
    assert.equal(sound.code, 0, `${sound.stdout}\n${sound.stderr}`)
    assert.ok(sound.json!.result.deep.rows > 0)
    assert.deepEqual([sound.json!.result.deep.missing, sound.json!.result.deep.orphans], [[], []])

    // A copy of the app data with a stray run directory, then with the model's run artifacts deleted.
    const copy = join(tempDir('deep-'), 'data')
    assert.equal((await backup(['restore', made.json!.result.id, '--repo', repo, '--to', copy])).code, 0)
    const stray = join(copy, 'artifacts', '1', 'f'.repeat(32), 'artifacts')
    mkdirSync(stray, {recursive: true})
    writeFileSync(join(stray, 'left-behind.txt'), 'no run row points here')
    const deepRepo = tempDir('deep-repo-')
    const withOrphan = await backup(['create', '--source', copy, '--repo', deepRepo])
    const orphanVerify = await backup(['verify', withOrphan.json!.result.id, '--repo', deepRepo, '--deep'])
    assert.equal(orphanVerify.code, 0, orphanVerify.stdout)
    assert.deepEqual(orphanVerify.json!.result.deep.orphans, [`1/${'f'.repeat(32)}`])
    assert.ok(orphanVerify.json!.warnings!.some((w: string) => /orphans/.test(w)))

    // --artifacts referenced leaves the stray directory out.
    const referenced = await backup(['create', '--source', copy, '--repo', deepRepo, '--artifacts', 'referenced'])
    const referencedManifest = JSON.parse(
      readFileSync(join(deepRepo, `${referenced.json!.result.id}.manifest.json`), 'utf8'),
    )
    assert.equal(referencedManifest.artifacts.mode, 'referenced')
    assert.ok(referencedManifest.files.every((f: {path: string}) => !f.path.includes('f'.repeat(32))))
    assert.equal(referencedManifest.artifacts.files, withOrphan.json!.result.files - 1)

    const db = new Database(join(copy, 'mlflow.db'), {readonly: true})
    const runId = (db.prepare('SELECT run_id FROM model_versions').get() as {run_id: string}).run_id
    const experimentId = (
      db.prepare('SELECT experiment_id FROM runs WHERE run_uuid = ?').get(runId) as {experiment_id: number}
    ).experiment_id
    db.close()
    rmSync(join(copy, 'artifacts', String(experimentId), runId), {recursive: true})
    const withMissing = await backup(['create', '--source', copy, '--repo', deepRepo])
    assert.equal(
      (await backup(['verify', withMissing.json!.result.id, '--repo', deepRepo])).code,
      0,
      'the archive itself is intact',
    )
    const missingVerify = await backup(['verify', withMissing.json!.result.id, '--repo', deepRepo, '--deep'])
    assert.equal(missingVerify.code, 6, missingVerify.stdout)
    assert.equal(missingVerify.json!.error!.code, 'BACKUP_DEEP_FAILED')
    assert.match(missingVerify.json!.error!.message, /missing artifact for model model-rich version 1/)
  })

  it('a restore refused or killed half-way leaves the target as it was; --force takes a safety backup first', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const id = (await backup(['list', '--repo', repo])).json!.result.backups[0].id as string
    const target = join(tempDir('restore-target-'), 'data')
    assert.equal((await backup(['restore', id, '--repo', repo, '--to', target])).code, 0)
    const before = readFileSync(join(target, 'mlflow.db'))
    const refused = await backup(['restore', id, '--repo', repo, '--to', target])
    assert.equal(refused.code, 2)
    assert.equal(refused.json!.error!.code, 'TARGET_NOT_EMPTY')
    // Killed once the new database is built in scratch space, before the swap (the fault hook SIGKILLs the
    // process there): the live directory is untouched.
    const child = spawn(
      process.execPath,
      [RUN, 'backup', 'restore', id, '--repo', repo, '--to', target, '--force', '--yes'],
      {stdio: ['ignore', 'ignore', 'ignore'], env: {...process.env, MLFLOWCTL_FAULT_AT: 'restore:loaded'}},
    )
    const signal = await new Promise((r) => child.once('exit', (_code, killedBy) => r(killedBy)))
    assert.equal(signal, 'SIGKILL', 'the restore was killed at restore:loaded')
    assert.deepEqual(
      readFileSync(join(target, 'mlflow.db')),
      before,
      'the target changed although the restore was killed',
    )
    // With --force and --yes: a safety backup, then the swap.
    const forced = await backup(['restore', id, '--repo', repo, '--to', target, '--force', '--yes'])
    assert.equal(forced.code, 0, forced.stdout)
    assert.ok(existsSync(forced.json!.result.safetyBackup))
    assert.equal((await backup(['verify', forced.json!.result.safetyBackup])).code, 0)
    // A corrupt archive never touches the target.
    const corrupt = join(tempDir('restore-corrupt-'), 'bad.tar.gz')
    copyFileSync(join(repo, `${id}.mlflowctl-backup.tar.gz`), corrupt)
    truncateSync(corrupt, 2000)
    const bad = await backup(['restore', corrupt, '--to', target, '--force', '--yes'])
    assert.equal(bad.code, 6)
    assert.ok(existsSync(join(target, 'mlflow.db')))
  })

  it('--encrypt: AES-256-GCM with a passphrase; no plaintext in the archive; a wrong passphrase or a changed byte fails, the right one verifies and restores', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const secretRepo = tempDir('backup-encrypted-')
    const passphraseFile = join(secretRepo, '..', `pass-${Date.now()}`)
    writeFileSync(passphraseFile, 'correct horse battery staple\n', {mode: 0o600})
    const noPassphrase = await backup(['create', '--source', dataDir, '--repo', secretRepo, '--encrypt'])
    assert.equal(noPassphrase.code, 3)
    assert.equal(noPassphrase.json!.error!.code, 'PASSPHRASE_REQUIRED')
    const made = await backup(['create', '--source', dataDir, '--repo', secretRepo, '--encrypt'], {
      MLFLOWCTL_BACKUP_PASSPHRASE: 'correct horse battery staple',
    })
    assert.equal(made.code, 0, made.stdout)
    assert.ok(!made.stdout.includes('correct horse'), 'the passphrase never reaches the output')
    const archive = readFileSync(made.json!.result.path)
    assert.equal(archive.subarray(0, 8).toString(), 'MLFCENC1')
    assert.ok(
      !archive.includes(Buffer.from('alembic_version')) && !archive.includes(Buffer.from([0x1f, 0x8b, 0x08])),
      'neither table names nor a gzip header in clear',
    )
    const id = made.json!.result.id
    const locked = await backup(['verify', id, '--repo', secretRepo])
    assert.equal(locked.code, 3)
    assert.equal(locked.json!.error!.code, 'PASSPHRASE_REQUIRED')
    const wrong = await backup(['verify', id, '--repo', secretRepo], {MLFLOWCTL_BACKUP_PASSPHRASE: 'wrong'})
    assert.equal(wrong.code, 6)
    assert.equal(wrong.json!.error!.code, 'BACKUP_DECRYPT_FAILED')
    for (const offset of [60, archive.length - 100]) {
      const tampered = join(secretRepo, `tampered-${offset}.tar.gz`)
      const changed = Buffer.from(archive)
      changed[offset] ^= 0x01
      writeFileSync(tampered, changed)
      assert.equal(
        (await backup(['verify', tampered, '--passphrase-file', passphraseFile])).json!.error!.code,
        'BACKUP_DECRYPT_FAILED',
        `byte ${offset}`,
      )
    }
    assert.equal((await backup(['verify', id, '--repo', secretRepo, '--passphrase-file', passphraseFile])).code, 0)
    const target = join(tempDir('restore-encrypted-'), 'data')
    const restored = await backup([
      'restore',
      id,
      '--repo',
      secretRepo,
      '--to',
      target,
      '--passphrase-file',
      passphraseFile,
    ])
    assert.equal(restored.code, 0, restored.stdout)
    assert.ok(existsSync(join(target, 'mlflow.db')))
  })
})
