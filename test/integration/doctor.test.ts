// mlflowctl doctor against the fake Connect running the real extension with real MLflow. Every failure is
// produced for real (a wrong key, a stopped process, a rewritten alembic_version...), not by mocking a check.
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {createServer as createHttpsServer} from 'node:https'
import {createServer as createTcpServer, type Socket} from 'node:net'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {after, before, describe, it} from 'node:test'

import {runCli, tempDir, type CliResult} from '../support/cli.js'
import {freePort} from '../support/cloud.js'
import {OTHER_KEY, PUBLISHER_KEY, startFakeConnect} from '../support/fake-connect.js'
import {NO_VENVS, requireService, testVenvs} from '../support/services.js'

const fake = await startFakeConnect()
const venv = testVenvs().find((v) => v.mlflowVersion.startsWith('3.'))
const configDir = tempDir('doctor-config-')
const env = {
  CONNECT_SERVER: fake.url,
  CONNECT_API_KEY: PUBLISHER_KEY,
  MLFLOWCTL_CONFIG_DIR: configDir,
  MLFLOWCTL_CLIENT_PYTHON: venv?.python ?? 'python3',
}
const dir = join(tempDir(), 'ext')
let guid = ''

const doctor = (args: string[], extra: Record<string, string> = {}, timeoutMs = 120_000) =>
  runCli(['doctor', ...args, '--json'], {env: {...env, ...extra}, timeoutMs})
const check = (result: CliResult, id: string) =>
  result.json!.result.checks.find((c: {id: string}) => c.id === id) as {status: string; detail: string; fix?: string}
const failed = (result: CliResult) =>
  result.json!.result.checks.filter((c: {status: string}) => c.status === 'fail').map((c: {id: string}) => c.id)
const sqlite = (sql: string) =>
  execFileSync(
    venv!.python,
    [
      '-c',
      'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchall(); c.commit(); print(r[0][0] if r else "")',
      join(fake.options.workDir, 'data', guid, 'mlflow.db'),
      sql,
    ],
    {encoding: 'utf8'},
  ).trim()

describe('mlflowctl doctor against the fake Connect', () => {
  before(async () => {
    if (!venv) return
    assert.equal((await runCli(['init', dir, '--mlflow-version', venv.mlflowVersion])).code, 0)
    const deployed = await runCli(
      ['deploy', dir, '--new', '--name', 'mlflow-doctor', '--vanity', 'mlflow-doctor/', '--json'],
      {env},
    )
    assert.equal(deployed.code, 0, deployed.stdout)
    guid = deployed.json!.result.guid
  })

  it('passes everything on a healthy deployment (with --deep), finding the GUID from the deployment record', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // The free-space thresholds are the test machine's business, not the deployment's: set so that any disk passes
    // (the warning itself is tested below with --min-free 100TiB).
    const roomy = ['--min-free', '1MiB', '--min-free-percent', '0']
    const result = await doctor([dir, '--deep', '-v', ...roomy])
    assert.equal(result.code, 0, result.stdout)
    assert.deepEqual(failed(result), [])
    for (const id of [
      'connect.auth',
      'connect.access',
      'connect.env',
      'connect.vanity',
      'mlflow.health',
      'mlflow.version',
      'mlflow.rest',
      'mlflow.origin',
      'mlflow.artifacts',
      'extension.schema',
      'extension.free-space',
      'client.mlflow',
    ]) {
      assert.equal(check(result, id).status, 'pass', `${id}: ${check(result, id).detail}`)
    }
    assert.match(check(result, 'mlflow.auth').detail, /Key: HTTP 200; Bearer: HTTP 401/)
    assert.match(check(result, 'config.guid').detail, /deployment record/)
    assert.match(check(result, 'connect.tls').detail, /plain HTTP on loopback/)
    assert.ok(!result.stdout.includes(PUBLISHER_KEY))
    const human = await runCli(['doctor', dir, ...roomy], {env})
    assert.match(human.stdout, /✓ MLflow answers \/health/)
    assert.match(human.stdout, /\d+ passed, 0 warnings, 0 failed, \d+ skipped/)
  })

  it('a wrong key exits 4, a non-collaborator exits 4, an unknown GUID exits 3, no server exits 3', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const wrong = await doctor([dir], {CONNECT_API_KEY: 'not-a-valid-key-000000'})
    assert.equal(wrong.code, 4)
    assert.equal(check(wrong, 'connect.auth').status, 'fail')
    assert.match(check(wrong, 'connect.auth').fix!, /new API key/)
    assert.equal(check(wrong, 'mlflow.health').status, 'skip')
    const stranger = await doctor(['--guid', guid], {CONNECT_API_KEY: OTHER_KEY})
    assert.equal(stranger.code, 4)
    assert.match(check(stranger, 'connect.access').detail, /not the owner or a collaborator/)
    const unknown = await doctor(['--guid', '00000000-0000-0000-0000-000000000000'])
    assert.equal(unknown.code, 3)
    assert.match(check(unknown, 'connect.access').detail, /no content with GUID/)
    const none = await doctor(['--guid', guid], {CONNECT_SERVER: '', MLFLOWCTL_PROFILE: ''})
    assert.equal(none.code, 3)
  })

  it('reports min_processes 0 and low free space as warnings, missing env names as a failure', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const item = fake.content.get(guid)!
    item.settings.min_processes = 0
    const token = item.env.get('MLFLOWCTL_OPS_TOKEN')!
    item.env.delete('MLFLOWCTL_OPS_TOKEN')
    try {
      const result = await doctor([dir, '--min-free', '100TiB'])
      assert.equal(check(result, 'connect.state').status, 'warn')
      assert.match(check(result, 'connect.state').fix!, /min_processes to 1/)
      assert.equal(check(result, 'extension.free-space').status, 'warn')
      assert.match(check(result, 'connect.env').detail, /needs MLFLOWCTL_OPS_TOKEN/)
      assert.equal(result.code, 6)
    } finally {
      item.settings.min_processes = 1
      item.env.set('MLFLOWCTL_OPS_TOKEN', token)
    }
  })

  it('checks the age of the last backup in the history ledger against --max-backup-age', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const dataDir = tempDir('doctor-data-')
    mkdirSync(dataDir, {recursive: true})
    const event = (hoursAgo: number) =>
      JSON.stringify({
        v: 1,
        time: new Date(Date.now() - hoursAgo * 3_600_000).toISOString(),
        action: 'backup',
        result: 'ok',
        server: fake.url,
        guid,
      })
    const none = await doctor([dir, '--only', 'extension.backup-age', '--max-backup-age', '26h'], {
      MLFLOWCTL_DATA_DIR: dataDir,
    })
    assert.equal(none.code, 6)
    assert.match(check(none, 'extension.backup-age').fix!, /mlflowctl backup create/)
    writeFileSync(join(dataDir, 'history.jsonl'), `${event(50)}\n`)
    const stale = await doctor([dir, '--only', 'extension.backup-age', '--max-backup-age', '26h'], {
      MLFLOWCTL_DATA_DIR: dataDir,
    })
    assert.equal(stale.code, 6)
    assert.match(check(stale, 'extension.backup-age').detail, /the last backup is 2 days old/)
    writeFileSync(join(dataDir, 'history.jsonl'), `${event(50)}\n${event(3)}\n`)
    const fresh = await doctor([dir, '--only', 'extension.backup-age', '--max-backup-age', '26h'], {
      MLFLOWCTL_DATA_DIR: dataDir,
    })
    assert.equal(fresh.code, 0)
    assert.match(check(fresh, 'extension.backup-age').detail, /3 h old/)
  })

  it('names pending migrations and a database ahead of the code', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    const head = sqlite('SELECT version_num FROM alembic_version')
    const previous = execFileSync(
      venv!.python,
      [
        '-c',
        'from alembic.script import ScriptDirectory; from mlflow.store.db.utils import _get_alembic_config; import sys; print(ScriptDirectory.from_config(_get_alembic_config(db_url="")).get_revision(sys.argv[1]).down_revision)',
        head,
      ],
      {encoding: 'utf8'},
    ).trim()
    try {
      sqlite(`UPDATE alembic_version SET version_num='${previous}'`)
      const behind = await doctor([dir, '--only', 'extension'])
      assert.equal(behind.code, 6)
      assert.match(check(behind, 'extension.schema').detail, /1 migration\(s\) pending/)
      sqlite("UPDATE alembic_version SET version_num='ffffffffffff'")
      const ahead = await doctor([dir, '--only', 'extension.schema'])
      assert.match(check(ahead, 'extension.schema').detail, /ahead of the code/)
      assert.match(check(ahead, 'extension.schema').fix!, /restore a backup/)
    } finally {
      sqlite(`UPDATE alembic_version SET version_num='${head}'`)
    }
  })

  it('a stopped content fails /health with a pointer to its log; misconfigured allowed hosts are named', async (t) => {
    if (!requireService(t, Boolean(venv), NO_VENVS)) return
    // Changed in Connect's UI after a verified deploy: Connect restarts the content with the new value.
    const item = fake.content.get(guid)!
    item.env.set('MLFLOW_SERVER_ALLOWED_HOSTS', 'mlflow.elsewhere.example')
    try {
      await fake.restart(guid)
      const misconfigured = await doctor([dir])
      assert.equal(misconfigured.code, 6)
      assert.equal(check(misconfigured, 'mlflow.health').status, 'pass', '/health is exempt from the host check')
      assert.equal(check(misconfigured, 'mlflow.rest').status, 'fail')
      assert.match(check(misconfigured, 'mlflow.rest').fix!, /MLFLOW_SERVER_ALLOWED_HOSTS/)
    } finally {
      item.env.delete('MLFLOW_SERVER_ALLOWED_HOSTS')
      await fake.restart(guid)
    }

    await fake.content.get(guid)!.running!.stop()
    const stopped = await doctor([dir])
    assert.equal(stopped.code, 6)
    assert.equal(check(stopped, 'mlflow.health').status, 'fail')
    assert.match(check(stopped, 'mlflow.health').fix!, /startup\.refused/)
    assert.equal(check(stopped, 'extension.schema').status, 'skip')
    assert.match(check(stopped, 'extension.schema').detail, /MLflow answers \/health failed/)
  })
})

describe('doctor: TLS and unreachable hosts', () => {
  const certs = tempDir('doctor-tls-')
  const servers: Array<{close(): void}> = []
  after(() => servers.forEach((server) => server.close()))

  /** A certificate valid from/to the given offsets in days, made with the emulators venv's `cryptography`. */
  function certificate(name: string, fromDays: number, toDays: number): {cert: string; key: string} | undefined {
    const python = JSON.parse(readFileSync(join(process.env.MLFLOWCTL_CACHE_DIR!, 'emulators.json'), 'utf8'))
      .python as string
    const script = `
import datetime as dt, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
now = dt.datetime.now(dt.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
  .not_valid_before(now + dt.timedelta(days=float(sys.argv[2]))).not_valid_after(now + dt.timedelta(days=float(sys.argv[3])))
  .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
open(sys.argv[1] + ".pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[1] + ".key", "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
`
    try {
      execFileSync(python, ['-c', script, join(certs, name), String(fromDays), String(toDays)])
    } catch {
      return undefined
    }
    return {cert: join(certs, `${name}.pem`), key: join(certs, `${name}.key`)}
  }

  async function httpsServer(files: {cert: string; key: string}): Promise<string> {
    const port = await freePort()
    const server = createHttpsServer({cert: readFileSync(files.cert), key: readFileSync(files.key)}, (_req, res) =>
      res.writeHead(401).end('{"code":30,"error":"Invalid login."}'),
    )
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    servers.push(server)
    return `https://127.0.0.1:${port}/`
  }

  it('fails a self-signed certificate with a CA-bundle hint, passes it with --ca-certificate, warns under 14 days, fails an expired one', async (t) => {
    const selfSigned = certificate('self', -1, 365)
    if (
      !requireService(
        t,
        Boolean(selfSigned),
        'the emulators venv (with cryptography) is missing; run `node scripts/provision.mjs`',
      )
    )
      return
    const url = await httpsServer(selfSigned!)
    const untrusted = await doctor(['--guid', 'g', '--only', 'connect.tls'], {CONNECT_SERVER: url})
    assert.equal(check(untrusted, 'connect.tls').status, 'fail')
    assert.match(check(untrusted, 'connect.tls').fix!, /--ca-certificate/)
    const trusted = await doctor(['--guid', 'g', '--only', 'connect.tls', '--ca-certificate', selfSigned!.cert], {
      CONNECT_SERVER: url,
    })
    assert.equal(check(trusted, 'connect.tls').status, 'pass', check(trusted, 'connect.tls').detail)
    const soon = certificate('soon', -1, 5)!
    const soonResult = await doctor(['--guid', 'g', '--only', 'connect.tls', '--ca-certificate', soon.cert], {
      CONNECT_SERVER: await httpsServer(soon),
    })
    assert.equal(check(soonResult, 'connect.tls').status, 'warn')
    assert.match(check(soonResult, 'connect.tls').detail, /expires in [45] days/)
    const expired = certificate('expired', -30, -2)!
    const expiredResult = await doctor(['--guid', 'g', '--only', 'connect.tls', '--ca-certificate', expired.cert], {
      CONNECT_SERVER: await httpsServer(expired),
    })
    assert.equal(check(expiredResult, 'connect.tls').status, 'fail')
    assert.match(check(expiredResult, 'connect.tls').fix!, /expired/)
  })

  it('a host that accepts connections but never answers costs one timeout per chain, not the sum', async () => {
    const port = await freePort()
    const sockets: Socket[] = []
    const silent = createTcpServer((socket) => sockets.push(socket)) // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve))
    servers.push({close: () => (sockets.forEach((s) => s.destroy()), silent.close())})
    // 26 checks, many of which talk to the server: summed timeouts would take minutes. The bound is the
    // kill timeout of the child process (runCli), not a measured duration.
    const result = await doctor(
      ['--guid', 'g', '--timeout', '2'],
      {CONNECT_SERVER: `http://127.0.0.1:${port}/`},
      20_000,
    )
    assert.equal(result.code, 6, `killed or wrong exit: ${result.code}`)
    assert.match(check(result, 'connect.auth').detail, /no answer within 2 s|timeout|within 2 s/i)
    assert.equal(check(result, 'mlflow.health').status, 'skip')
  })
})
