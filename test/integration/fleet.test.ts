// fleet list / doctor / backup create / upgrade plan against five deployments of the real extension (real MLflow)
// on the fake Connect, each in another state: healthy, stopped, behind on schema, no data directory, and one the key
// may only view. Also: the metrics a running extension serves through Connect, checked with promtool, and the
// node-exporter textfile of a cron-run fleet command.
// test-pool: background (no deadline here that a slow, busy machine could miss)
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {cpSync, existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {before, describe, it} from 'node:test'

import {runCli, tempDir} from '../support/cli.js'
import {ADMIN_KEY, OTHER_KEY, PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const configDir = tempDir('fleet-config-')
const env = {CONNECT_SERVER: fake.url, CONNECT_API_KEY: PUBLISHER_KEY, MLFLOWCTL_CONFIG_DIR: configDir}
const promtool = process.env.MLFLOWCTL_TEST_PROMTOOL
const guids: Record<'healthy' | 'stopped' | 'behind' | 'noDataDir' | 'viewOnly', string> = {
  healthy: '',
  stopped: '',
  behind: '',
  noDataDir: '',
  viewOnly: '',
}

const python = (code: string, ...args: string[]) =>
  execFileSync(venv!.python, ['-c', code, ...args], {encoding: 'utf8'}).trim()

/** The revision before MLflow's head: a database there is behind this MLflow by one migration. */
const previousRevision = () =>
  python(
    [
      'import os',
      'from alembic.config import Config',
      'from alembic.script import ScriptDirectory',
      'import mlflow.store.db_migrations as m',
      'c = Config(); c.set_main_option("script_location", os.path.dirname(m.__file__))',
      's = ScriptDirectory.from_config(c)',
      'print(s.get_revision(s.get_current_head()).down_revision)',
    ].join('\n'),
  )

const promtoolCheck = (text: string) =>
  execFileSync(promtool!, ['check', 'metrics'], {input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe']})

describe('fleet commands against five deployments in mixed states', () => {
  before(async () => {
    if (!venv) return
    // Only administrators create tags; deploy then sets it on what it deploys (a viewer sees tags, not bundles).
    const tag = await fetch(new URL('__api__/v1/tags', fake.url), {
      method: 'POST',
      headers: {Authorization: `Key ${ADMIN_KEY}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({name: 'mlflowctl'}),
    })
    assert.equal(tag.status, 200)
    const template = join(tempDir(), 'template')
    assert.equal((await runCli(['init', template, '--mlflow-version', venv.mlflowVersion])).code, 0)
    const deploy = async (name: string, key: string, extra: string[] = []) => {
      const dir = join(tempDir(), name)
      cpSync(template, dir, {recursive: true})
      const deployed = await runCli(['deploy', dir, '--new', '--name', name, ...extra, '--json'], {
        env: {...env, CONNECT_API_KEY: key},
        timeoutMs: 600_000,
      })
      assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr)
      return deployed.json!.result.guid as string
    }
    // One at a time: five cold starts of MLflow at once would only compete for the same two cores.
    guids.healthy = await deploy('fleet-healthy', PUBLISHER_KEY)
    guids.stopped = await deploy('fleet-stopped', PUBLISHER_KEY)
    guids.behind = await deploy('fleet-behind', PUBLISHER_KEY, ['-E', 'MLFLOWCTL_AUTO_MIGRATE=false'])
    guids.noDataDir = await deploy('fleet-no-data-dir', PUBLISHER_KEY)
    guids.viewOnly = await deploy('fleet-other-team', OTHER_KEY)
    // The other team shares its server with the publisher as a viewer only.
    const shared = await fetch(new URL(`__api__/v1/content/${guids.viewOnly}/permissions`, fake.url), {
      method: 'POST',
      headers: {Authorization: `Key ${OTHER_KEY}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({principal_guid: 'u-publisher', principal_type: 'user', role: 'viewer'}),
    })
    assert.equal(shared.status, 200)
    await fake.stopContent(guids.stopped)
    // Behind: the database one migration back, and a restart with automatic migration off (the extension refuses).
    await fake.stopContent(guids.behind)
    python(
      'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("UPDATE alembic_version SET version_num=?", (sys.argv[2],)); c.commit()',
      join(fake.options.workDir, 'data', guids.behind, 'mlflow.db'),
      previousRevision(),
    )
    await fake.startContent(guids.behind)
    // No data directory: the server stops giving the item one (its storage is off), and it restarts.
    fake.withoutDataDir.add(guids.noDataDir)
    await fake.startContent(guids.noDataDir)
  })

  it('fleet list finds all five, with what each one is and its doctor verdict', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const listed = await runCli(['fleet', 'list', '--json'], {env, timeoutMs: 600_000})
    assert.equal(listed.code, 0, listed.stdout + listed.stderr)
    const rows = listed.json!.result.deployments as Array<Record<string, unknown>>
    const row = (guid: string) => rows.find((candidate) => candidate.guid === guid)!
    assert.deepEqual(rows.map((r) => r.guid).sort(), Object.values(guids).sort())
    assert.equal(row(guids.healthy).schema, 'current')
    assert.equal(row(guids.healthy).mlflowVersion, venv!.mlflowVersion)
    assert.equal(row(guids.healthy).storage, 'local')
    assert.equal(row(guids.healthy).owner, 'publisher')
    assert.deepEqual(row(guids.healthy).doctor, {exitCode: 0, failed: []})
    assert.equal(row(guids.viewOnly).access, 'view')
    assert.equal(row(guids.viewOnly).recognisedBy, 'tag')
    assert.equal(row(guids.viewOnly).owner, 'other')
    // A deployment the key may only view gets no doctor (it would fail on rights alone).
    assert.equal(row(guids.viewOnly).doctor, undefined)
    for (const state of ['stopped', 'behind', 'noDataDir'] as const) {
      const {doctor} = row(guids[state]) as {doctor: {exitCode: number; failed: string[]}}
      assert.notEqual(doctor.exitCode, 0, `${state}: ${JSON.stringify(doctor)}`)
      assert.ok(doctor.failed.length > 0, `${state} names its failed checks`)
    }
    assert.match(String(row(guids.behind).schema), /^behind \(\w+ → \w+\), start refused$/)
    const quick = await runCli(['fleet', 'list', '--no-doctor', '--json'], {env, timeoutMs: 300_000})
    assert.equal(quick.code, 0)
    assert.ok((quick.json!.result.deployments as Array<{doctor?: unknown}>).every((r) => r.doctor === undefined))
    const text = await runCli(['fleet', 'list'], {env, timeoutMs: 300_000})
    assert.equal(text.code, 0)
    process.stderr.write(`\n--- fleet list (text) ---\n${text.stdout}\n`)
  })

  it('fleet doctor runs every doctor, names each failure, exits with the worst code and writes the textfile', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    if (!requireService(t, Boolean(promtool), 'promtool is missing (MLFLOWCTL_TEST_PROMTOOL; .ci/run unpacks it)'))
      return
    const textfile = join(tempDir(), 'mlflow-doctor.prom')
    const result = await runCli(['fleet', 'doctor', '--jobs', '3', '--metrics-file', textfile, '--json'], {
      env,
      timeoutMs: 600_000,
    })
    const outcomes = result.json!.result.outcomes as Array<{
      guid: string
      exitCode: number
      skipped?: string
      error?: {message: string; suggestions?: string[]}
    }>
    const outcome = (guid: string) => outcomes.find((candidate) => candidate.guid === guid)!
    assert.equal(outcomes.length, 5)
    assert.equal(outcome(guids.healthy).exitCode, 0)
    for (const state of ['stopped', 'behind', 'noDataDir'] as const) {
      assert.equal(outcome(guids[state]).exitCode, 6, state)
      assert.ok(outcome(guids[state]).error!.suggestions!.length > 0, `${state} has a fix`)
    }
    // Another team's deployment, which the key may only view, is skipped: it must not fail every run.
    assert.deepEqual(
      [outcome(guids.viewOnly).exitCode, outcome(guids.viewOnly).skipped],
      [0, 'the key may only view it'],
    )
    assert.equal(result.code, 6)
    assert.equal(result.json!.error!.code, 'FLEET_MEMBER_FAILED')
    assert.equal(result.json!.result.failed.length, 3)
    const prom = readFileSync(textfile, 'utf8')
    promtoolCheck(prom)
    assert.match(prom, /mlflowctl_command_exit_code\{command="fleet doctor",target="[^"]*"\} 6/)
    assert.match(prom, new RegExp(`mlflowctl_command_member_exit_code\\{[^}]*guid="${guids.healthy}"\\} 0`))
    assert.doesNotMatch(prom, /mlflowctl_command_last_success_timestamp_seconds/) // it never succeeded
    assert.ok(!prom.includes(PUBLISHER_KEY))
    const text = await runCli(['fleet', 'doctor'], {env, timeoutMs: 600_000})
    assert.equal(text.code, 6)
    assert.match(text.stdout, /To fix:/)
    process.stderr.write(`\n--- fleet doctor (text) ---\n${text.stdout}\n`)
  })

  it('fleet backup create backs up each into REPO/GUID; fleet upgrade plan plans each', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const repo = tempDir('fleet-repo-')
    const textfile = join(tempDir(), 'mlflow-backup.prom')
    const backup = await runCli(
      [
        'fleet',
        'backup',
        'create',
        '--repo',
        repo,
        '--guid',
        `${guids.healthy},${guids.stopped}`,
        '--metrics-file',
        textfile,
        '--json',
      ],
      {env, timeoutMs: 600_000},
    )
    const outcomes = backup.json!.result.outcomes as Array<{guid: string; exitCode: number}>
    assert.deepEqual(outcomes.map((o) => o.guid).sort(), [guids.healthy, guids.stopped].sort())
    assert.equal(outcomes.find((o) => o.guid === guids.healthy)!.exitCode, 0)
    assert.notEqual(outcomes.find((o) => o.guid === guids.stopped)!.exitCode, 0)
    assert.ok(existsSync(join(repo, guids.healthy)))
    const listedBackups = await runCli(['backup', 'list', '--repo', join(repo, guids.healthy), '--json'], {env})
    assert.equal(listedBackups.code, 0)
    assert.equal((listedBackups.json!.result.backups as unknown[]).length, 1)
    const plan = await runCli(
      ['fleet', 'upgrade', 'plan', '--to', venv!.mlflowVersion, '--guid', guids.healthy, '--json'],
      {
        env,
        timeoutMs: 300_000,
      },
    )
    assert.equal(plan.code, 0, plan.stdout + plan.stderr)
    // A single `backup create` writes its own textfile too: its bytes, and the success time kept on a later failure.
    const single = join(tempDir(), 'backup.prom')
    const ok = await runCli(
      [
        'backup',
        'create',
        '--source',
        `connect:${guids.healthy}`,
        '--repo',
        join(repo, 'single'),
        '--metrics-file',
        single,
      ],
      {env, timeoutMs: 300_000},
    )
    assert.equal(ok.code, 0, ok.stderr)
    const first = readFileSync(single, 'utf8')
    const success = /mlflowctl_command_last_success_timestamp_seconds\{[^}]*\} (\S+)/.exec(first)![1]
    assert.match(first, /mlflowctl_command_bytes\{[^}]*\} [1-9]\d*/)
    // The same job failing (its repository is a file): the last success time is kept, the run says it failed.
    const notADirectory = join(tempDir(), 'not-a-directory')
    writeFileSync(notADirectory, 'x')
    const failed = await runCli(
      ['backup', 'create', '--source', `connect:${guids.healthy}`, '--repo', notADirectory, '--metrics-file', single],
      {env, timeoutMs: 300_000},
    )
    assert.notEqual(failed.code, 0)
    const second = readFileSync(single, 'utf8')
    assert.match(second, /mlflowctl_command_success\{[^}]*\} 0/)
    assert.equal(/mlflowctl_command_last_success_timestamp_seconds\{[^}]*\} (\S+)/.exec(second)?.[1], success)
    if (promtool) promtoolCheck(second)
  })

  it('deploy-monitor deploys a scheduled report that runs the checks; it is emailed only when one fails', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Free space is the test machine's disk, not the deployment's business: any disk passes.
    const first = await runCli(['deploy-monitor', '--every', '1h', '--min-free-percent', '0', '--json'], {
      env,
      timeoutMs: 900_000,
    })
    assert.equal(first.code, 0, first.stdout + first.stderr)
    const monitor = first.json!.result as {guid: string; created: boolean; targets: string[]; schedule: {id: number}}
    assert.ok(monitor.created)
    // Every deployment the key manages; the other team's (view only) is not the publisher's to watch.
    assert.deepEqual(monitor.targets.sort(), [guids.healthy, guids.stopped, guids.behind, guids.noDataDir].sort())
    const schedule = fake.schedules.get(monitor.schedule.id)!
    assert.deepEqual(
      [schedule.type, schedule.schedule, schedule.activate, schedule.email, schedule.timezone],
      ['hour', '{"N":1}', true, true, 'UTC'],
    )
    // Deploying rendered it once: three deployments fail, so Connect would send the email.
    const rendered = fake.renders.filter((render) => render.guid === monitor.guid)
    assert.equal(rendered.length, 1)
    assert.deepEqual(rendered[0].email, {scheduled: true, subject: 'MLflow deployments: 3 failing'})
    const page = await (
      await fetch(new URL(`content/${monitor.guid}/`, fake.url), {headers: {Authorization: `Key ${PUBLISHER_KEY}`}})
    ).text()
    assert.match(page, /1 healthy, 3 failing/)
    assert.match(page, /fleet-healthy/)
    assert.match(page, /MLFLOWCTL_AUTO_MIGRATE=false/) // the behind deployment's refusal, as its /health says
    const tokens = Object.values(JSON.parse(readFileSync(join(configDir, 'ops-tokens.json'), 'utf8')) as object)
    for (const token of tokens) {
      assert.ok(!page.includes(String(token)), 'no ops token on the page')
      assert.ok(!first.stdout.includes(String(token)) && !first.stderr.includes(String(token)))
    }
    if (process.env.MLFLOWCTL_TEST_KEEP_MONITOR_PAGE) writeFileSync(process.env.MLFLOWCTL_TEST_KEEP_MONITOR_PAGE, page)
    // Again, for the healthy one alone and every 30 minutes: the same content and schedule; nothing fails, no email.
    const second = await runCli(
      ['deploy-monitor', '--guid', guids.healthy, '--every', '30m', '--min-free-percent', '0', '--json'],
      {
        env,
        timeoutMs: 900_000,
      },
    )
    assert.equal(second.code, 0, second.stdout + second.stderr)
    assert.equal(second.json!.result.guid, monitor.guid)
    assert.equal(second.json!.result.created, false)
    assert.equal(second.json!.result.schedule.id, monitor.schedule.id)
    assert.deepEqual([fake.schedules.get(monitor.schedule.id)!.type, fake.schedules.size], ['minute', 1])
    const again = fake.renders.filter((render) => render.guid === monitor.guid).at(-1)!
    assert.deepEqual(again.email, {scheduled: false, subject: 'MLflow deployments: all 1 healthy'})
  })

  it('serves Prometheus metrics through Connect behind the ops token, and promtool accepts them', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    if (!requireService(t, Boolean(promtool), 'promtool is missing (MLFLOWCTL_TEST_PROMTOOL; .ci/run unpacks it)'))
      return
    const tokens = JSON.parse(readFileSync(join(configDir, 'ops-tokens.json'), 'utf8')) as Record<string, string>
    const token = Object.entries(tokens).find(([key]) => key.endsWith(guids.healthy))![1]
    const url = new URL(`content/${guids.healthy}/_mlflowctl/metrics`, fake.url)
    const refused = await fetch(url, {headers: {Authorization: `Key ${PUBLISHER_KEY}`}})
    assert.equal(refused.status, 401)
    await fetch(new URL(`content/${guids.healthy}/api/2.0/mlflow/experiments/search?max_results=5`, fake.url), {
      headers: {Authorization: `Key ${PUBLISHER_KEY}`},
    })
    const answer = await fetch(url, {headers: {Authorization: `Key ${PUBLISHER_KEY}`, 'X-Mlflowctl-Ops-Token': token}})
    assert.equal(answer.status, 200)
    assert.match(answer.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    const text = await answer.text()
    promtoolCheck(text)
    assert.match(text, /^mlflowctl_up 1\.0$/m)
    assert.match(text, /^mlflowctl_schema_current 1\.0$/m)
    assert.match(
      text,
      new RegExp(`mlflowctl_build_info\\{[^}]*mlflow_version="${venv!.mlflowVersion.replaceAll('.', '\\.')}"`),
    )
    assert.match(text, /^mlflowctl_http_requests_total\{route="experiments",status="200"\} [1-9]/m)
    assert.match(text, /^mlflowctl_database_bytes [1-9]/m)
    // Its handler slots, as MLflow's event loop bounds them (local storage: four at once).
    assert.match(text, /^mlflowctl_handler_slots 4\.0$/m)
    assert.ok(!text.includes(token))
    process.stderr.write(`\n--- metrics of ${guids.healthy} ---\n${text}\n`)
  })
})
