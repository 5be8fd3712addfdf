// What a new user trips over, each as the user meets it: through the built CLI.
import assert from 'node:assert/strict'
import {mkdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

import Database from 'better-sqlite3'
import semver from 'semver'
import * as tar from 'tar'

import {NEWEST_KNOWN_MLFLOW} from '../../src/core/versions.js'
import {instancePaths} from '../../src/adapters/dev/instance-store.js'
import {runCli, tempDir} from '../support/cli.js'

describe('new-user trips (no server needed)', () => {
  it('an unknown command is exit 2 with "did you mean", in the envelope under --json', async () => {
    const json = await runCli(['bakup', 'list', '--json'])
    assert.equal(json.code, 2, json.stdout + json.stderr)
    assert.equal(json.json!.status, 2)
    assert.equal(json.json!.error!.code, 'UNKNOWN_COMMAND')
    assert.ok(json.json!.error!.suggestions.includes('Did you mean backup list?'), json.stdout)
    const text = await runCli(['backup', 'lst'])
    assert.equal(text.code, 2)
    assert.match(text.stderr, /Did you mean backup list\?/)
  })

  it('a missing directory is a configuration error (exit 3), not "a bug"', async () => {
    const result = await runCli(['dev', 'up', '/nonexistent/dir', '--json'])
    assert.equal(result.code, 3, result.stdout)
    assert.equal(result.json!.error!.code, 'PATH_NOT_FOUND')
    assert.ok(!result.stdout.includes('This is a bug'))
  })

  it('db status --db /missing/dir says the directory does not exist (not "not a URL")', async () => {
    const result = await runCli(['db', 'status', '--db', '/missing/dir', '--json'])
    assert.equal(result.code, 2, result.stdout)
    assert.equal(result.json!.error!.code, 'DATABASE_NOT_FOUND')
    assert.match(result.json!.error!.message, /\/missing\/dir does not exist/)
  })

  it('db status measures against the newest tested release, and lists newer catalog releases as untested', async () => {
    const dir = tempDir('new-user-db-')
    const db = new Database(join(dir, 'mlflow.db'))
    db.exec(
      "CREATE TABLE experiments (experiment_id INTEGER); CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ('dc11669786a5')",
    )
    db.close()
    const result = await runCli(['db', 'status', '--db', dir, '--json'])
    assert.equal(result.code, 0, result.stdout)
    assert.equal(result.json!.result.target.version, NEWEST_KNOWN_MLFLOW)
    assert.equal(result.json!.result.kind, 'current', 'a database at the head init renders is not "behind"')
    const catalog = JSON.parse(readFileSync(new URL('../../catalog/mlflow-migrations.json', import.meta.url), 'utf8'))
    const newer = (catalog.releases as Array<{version: string}>)
      .map((r) => r.version)
      .filter((v) => semver.gt(v, NEWEST_KNOWN_MLFLOW))
    assert.deepEqual(result.json!.result.newerUntested, newer.sort(semver.compare))
    const text = await runCli(['db', 'status', '--db', dir])
    if (newer.length > 0)
      assert.match(
        text.stdout,
        new RegExp(`Newer in the catalog, untested with this mlflowctl: .*${newer.at(-1)!.replaceAll('.', '\\.')}`),
      )
  })

  it('backup verify of an ordinary tar.gz says it is not an mlflowctl backup (exit 6)', async () => {
    const dir = tempDir('new-user-tar-')
    mkdirSync(join(dir, 'json'))
    writeFileSync(join(dir, 'json', 'a.json'), '{}')
    const file = join(tempDir(), 'data.tar.gz')
    await tar.c({gzip: true, file, cwd: dir}, ['json'])
    const result = await runCli(['backup', 'verify', file, '--json'])
    assert.equal(result.code, 6, result.stdout)
    assert.equal(result.json!.error!.code, 'NOT_A_BACKUP')
    assert.match(result.json!.error!.message, /is not an mlflowctl backup: its first entry is json\//)
  })

  it('init refuses a version that is not a release, naming the nearest one (exit 2)', async () => {
    for (const [version, nearest] of [
      ['3.11', '3.11.1'],
      ['3.99', undefined],
    ] as const) {
      const result = await runCli(['init', join(tempDir(), 'b'), '--mlflow-version', version, '--json'])
      assert.equal(result.code, 2, result.stdout)
      assert.equal(result.json!.error!.code, 'MLFLOW_VERSION_UNKNOWN')
      if (nearest)
        assert.match(
          result.json!.error!.suggestions[0],
          new RegExp(`--mlflow-version ${nearest.replaceAll('.', '\\.')}`),
        )
    }
  })

  it('init renders a release that PyPI has and the catalog lacks, with a warning; unreachable PyPI refuses it', async () => {
    const pypi = createServer((req, res) => {
      const file = [{yanked: false, requires_python: '>=3.10'}]
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({releases: {'3.17.2': file, '3.19.0': file, '3.19.1rc0': file}}))
    })
    await new Promise<void>((resolve) => pypi.listen(0, '127.0.0.1', resolve))
    try {
      const env = {MLFLOWCTL_PYPI_URL: `http://127.0.0.1:${(pypi.address() as AddressInfo).port}`}
      const dir = join(tempDir(), 'b')
      const rendered = await runCli(['init', dir, '--mlflow-version', '3.19.0', '--json'], {env})
      assert.equal(rendered.code, 0, rendered.stdout)
      assert.equal(rendered.json!.result.mlflowVersion, '3.19.0')
      assert.match(rendered.json!.warnings![0], /3\.19\.0 is on PyPI but newer than the migration catalog .* untested/)
      assert.match(readFileSync(join(dir, 'requirements.txt'), 'utf8'), /^mlflow==3\.19\.0$/m)
      const unknown = await runCli(['init', join(tempDir(), 'b'), '--mlflow-version', '3.99', '--json'], {env})
      assert.equal(unknown.json!.error!.code, 'MLFLOW_VERSION_UNKNOWN', 'neither the catalog nor PyPI has it')
    } finally {
      pypi.close()
    }
    const offline = await runCli(['init', join(tempDir(), 'b'), '--mlflow-version', '3.19.0', '--json'])
    assert.equal(offline.json!.error!.code, 'MLFLOW_VERSION_UNKNOWN', 'PyPI unreachable: only the catalog decides')
  })

  it('init --mlflow-version 3.17 renders the release it names, 3.17.0', async () => {
    const dir = join(tempDir(), 'b')
    const result = await runCli(['init', dir, '--mlflow-version', '3.17', '--json'])
    assert.equal(result.code, 0, result.stdout)
    assert.equal(result.json!.result.mlflowVersion, '3.17.0')
    assert.match(readFileSync(join(dir, 'requirements.txt'), 'utf8'), /^mlflow==3\.17\.0$/m)
  })

  it('version bump --to an older release is refused without --allow-downgrade (exit 2)', async () => {
    const dir = join(tempDir(), 'b')
    assert.equal((await runCli(['init', dir, '--mlflow-version', NEWEST_KNOWN_MLFLOW])).code, 0)
    const env = {MLFLOWCTL_PYPI_URL: 'http://127.0.0.1:9'}
    const refused = await runCli(['version', 'bump', dir, '--to', '3.10.0', '--json'], {env})
    assert.equal(refused.code, 2, refused.stdout)
    assert.equal(refused.json!.error!.code, 'DOWNGRADE_REFUSED')
    const allowed = await runCli(['version', 'bump', dir, '--to', '3.10.0', '--allow-downgrade', '--json'], {env})
    assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr)
  })

  it('backup create --source on a bundle directory names where its dev data is', async () => {
    const bundle = join(tempDir(), 'bundle')
    assert.equal((await runCli(['init', bundle])).code, 0)
    const data = instancePaths(process.env.MLFLOWCTL_DATA_DIR!, bundle).data
    mkdirSync(data, {recursive: true})
    const result = await runCli(['backup', 'create', '--source', bundle, '--repo', tempDir(), '--json'])
    assert.equal(result.code, 2, result.stdout)
    assert.equal(result.json!.error!.code, 'SOURCE_NOT_FOUND')
    assert.ok(result.json!.error!.message.includes(`the data of its dev instance is in ${data}`), result.stdout)
    assert.match(result.json!.error!.suggestions[0], /^mlflowctl backup create --source \S+\/data --repo /)
  })

  it('dev status of a stopped instance: exit 6 with result and an error code in the envelope', async () => {
    const bundle = join(tempDir(), 'bundle')
    assert.equal((await runCli(['init', bundle])).code, 0)
    const result = await runCli(['dev', 'status', bundle, '--json'])
    assert.equal(result.code, 6, result.stdout)
    assert.equal(result.json!.status, 6)
    assert.equal(result.json!.result.running, false)
    assert.equal(result.json!.error!.code, 'DEV_NOT_RUNNING')
    // Where its data lives is printed even when it never ran (that is what backup create --source takes).
    const {data} = instancePaths(process.env.MLFLOWCTL_DATA_DIR!, bundle)
    assert.equal(result.json!.result.dataDir, data)
    const text = await runCli(['dev', 'status', bundle])
    assert.ok(text.stdout.includes(`Data dir: ${data}`), text.stdout)
  })

  it('a mistyped flag is exit 2 with the closest flag of that command, in the envelope under --json', async () => {
    const json = await runCli(['backup', 'list', '--rep', '/tmp/x', '--json'])
    assert.equal(json.code, 2, json.stdout + json.stderr)
    assert.equal(json.json!.error!.code, 'UNKNOWN_FLAG')
    assert.ok(json.json!.error!.suggestions.includes('Did you mean --repo (not --rep)?'), json.stdout)
    const text = await runCli(['backup', 'list', '--repo', '/tmp/x', '--jsno'])
    assert.equal(text.code, 2)
    assert.match(text.stderr, /Did you mean --json \(not --jsno\)\?/)
  })

  it('hints spell the command the way that runs from here: on PATH, in the clone, or by its path', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '')
    const hint = async (options: {cwd: string; path?: string}) => {
      const result = await runCli(['dev', 'status', join(tempDir(), 'never-started'), '--json'], {
        cwd: options.cwd,
        env: {MLFLOWCTL_INVOCATION: undefined, PATH: options.path ?? process.env.PATH},
      })
      assert.equal(result.json!.error!.code, 'DEV_NOT_RUNNING', result.stdout)
      return result.json!.error!.suggestions[0]
    }
    const elsewhere = tempDir('invocation-')
    assert.match(await hint({cwd: elsewhere}), new RegExp(`^node ${root}/bin/run\\.js dev up `))
    assert.match(await hint({cwd: root}), /^npx mlflowctl dev up /)
    const bin = join(tempDir('invocation-bin-'))
    symlinkSync(join(root, 'bin', 'run.js'), join(bin, 'mlflowctl'))
    assert.match(await hint({cwd: elsewhere, path: `${bin}:${process.env.PATH}`}), /^mlflowctl dev up /)
  })

  it('the --yes suggestion of a restore that cannot ask repeats --repo and --to, so that it runs as printed', async () => {
    const dir = tempDir('restore-hint-')
    for (const name of ['source', 'target']) {
      mkdirSync(join(dir, name))
      const db = new Database(join(dir, name, 'mlflow.db'))
      db.exec(
        "CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ('dc11669786a5'); INSERT INTO experiments VALUES (0, 'Default')",
      )
      db.close()
    }
    const repo = join(dir, 'repo')
    const created = await runCli(['backup', 'create', '--source', `sqlite:///${dir}/source/mlflow.db`, '--repo', repo])
    assert.equal(created.code, 0, created.stderr)
    const target = join(dir, 'target')
    const refused = await runCli(['backup', 'restore', 'latest', '--repo', repo, '--to', target, '--force', '--json'])
    assert.equal(refused.json!.error!.code, 'YES_REQUIRED', refused.stdout)
    assert.deepEqual(refused.json!.error!.suggestions, [
      `Re-run with --yes: mlflowctl backup restore latest --repo ${repo} --to ${target} --force --yes`,
    ])
  })

  it('DEBUG=* masks secrets typed on the command line, and a password in a flag value draws a warning', async () => {
    const password = 'sekrit-pass-0123'
    const apiKey = 'typed-api-key-0123456789'
    const result = await runCli(
      ['db', 'status', '--db', `postgresql://u:${password}@127.0.0.1:1/x`, '--api-key', apiKey, '--json'],
      {env: {DEBUG: '*'}},
    )
    assert.match(result.stderr, /oclif/, 'the debug channel is on')
    for (const secret of [password, apiKey]) assert.ok(!(result.stdout + result.stderr).includes(secret), secret)
    const plain = await runCli(['db', 'status', '--db', `postgresql://u:${password}@127.0.0.1:1/x`])
    assert.match(
      plain.stderr,
      /--db carries a password, .* set MLFLOWCTL_DB in the environment instead, or .* PGPASSWORD/,
    )
    assert.ok(!plain.stderr.includes(password))
  })
})
