// Cloud stand-ins for the storage-mode tests: moto (S3 + STS with IAM enforcement), the GCS emulator,
// Azurite over HTTPS with OAuth, the token-checked PostgreSQL roles (scripts/setup-pg-token-auth.sh with
// test/support/token-verifier.ts), and fake Connect integrations that issue credentials those services
// really accept.
import {AssumeRoleCommand, STSClient} from '@aws-sdk/client-sts'
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {createHmac, randomBytes, randomUUID} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {after} from 'node:test'

import pg from 'pg'

import type {FakeIntegration} from '../fake-connect/server.js'
import {tempDir} from './cli.js'
import {REPO_ROOT, pgBaseUrl} from './services.js'
import {TokenVerifier} from './token-verifier.js'

export interface TokenAuthConfig {
  caFile: string
  host: string
  port: number
  region: string
  iamUser: string
  entraUser: string
  verifierPort: number
}

export const NO_TOKEN_AUTH =
  'PostgreSQL is not set up to check cloud tokens; run `sudo bash scripts/setup-pg-token-auth.sh` (`.ci/run` does)'
export const NO_EMULATORS =
  'the emulators venv (moto, gcp-storage-emulator) is missing; run `node scripts/provision.mjs` (`.ci/run` does)'

export function tokenAuthConfig(): TokenAuthConfig | undefined {
  const file = process.env.MLFLOWCTL_TEST_TOKEN_AUTH ?? '/var/lib/mlflowctl-test/token-auth.json'
  if (!existsSync(file) || !pgBaseUrl()) return undefined
  return JSON.parse(readFileSync(file, 'utf8')) as TokenAuthConfig
}

/** Starts the LDAP side that PostgreSQL asks to check the token roles' passwords (one per test file). */
export async function startTokenVerifier(auth: TokenAuthConfig): Promise<TokenVerifier> {
  const verifier = new TokenVerifier([`${auth.host}:${auth.port}`, `127.0.0.1:${auth.port}`], auth.region)
  await verifier.listen(auth.verifierPort)
  return verifier
}

/** Creates a database owned by a token-only role, through the superuser URL. */
export async function createTokenDatabase(name: string, owner: string): Promise<void> {
  const client = new pg.Client({connectionString: pgBaseUrl()})
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    await client.query(`CREATE DATABASE "${name}" OWNER "${owner}"`)
  } finally {
    await client.end()
  }
}

function emulatorsPython(): string | undefined {
  const file = join(process.env.MLFLOWCTL_CACHE_DIR!, 'emulators.json')
  if (!existsSync(file)) return undefined
  const {python} = JSON.parse(readFileSync(file, 'utf8')) as {python: string}
  return existsSync(python) ? python : undefined
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number}
      server.close(() => resolve(port))
    })
  })
}

async function waitForHttp(url: string, child: ChildProcess, what: string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`)
    try {
      await fetch(url, {signal: AbortSignal.timeout(1000)})
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
  throw new Error(`${what} did not answer at ${url}`)
}

function startProcess(command: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(command, args, {
    env: {...process.env, ...env},
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  })
  child.stderr!.resume()
  after(() => {
    try {
      process.kill(-child.pid!, 'SIGTERM')
      process.kill(-child.pid!, 'SIGCONT') // a test that froze it and failed before thawing
    } catch {
      // already gone
    }
  })
  return child
}

export interface Moto {
  url: string
  /** Temporary credentials for the role, as Connect obtains them through web identity federation. */
  assumeRole(): Promise<{accessKeyId: string; secretAccessKey: string; sessionToken: string}>
  /** Object keys in a bucket, listed with fresh role credentials (so moto checks them too). */
  listObjects(bucket: string): Promise<string[]>
  /** Freezes the server (SIGSTOP): connections are accepted by the kernel and never answered, as by a hung endpoint. */
  freeze(): void
  thaw(): void
}

export async function startMoto(bucket: string): Promise<Moto | undefined> {
  const python = emulatorsPython()
  if (!python) return undefined
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const child = startProcess(python, ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    INITIAL_NO_AUTH_ACTION_COUNT: '6',
  })
  await waitForHttp(`${url}/moto-api/`, child, 'moto server')
  const principal = JSON.parse(
    execFileSync(python, [join(REPO_ROOT, 'test/support/moto_setup.py'), url, bucket], {encoding: 'utf8'}),
  ) as {accessKeyId: string; secretAccessKey: string; roleArn: string}
  const sts = new STSClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: {accessKeyId: principal.accessKeyId, secretAccessKey: principal.secretAccessKey},
  })
  const assumeRole = async () => {
    const {Credentials: c} = await sts.send(
      new AssumeRoleCommand({
        RoleArn: principal.roleArn,
        RoleSessionName: `connect-${randomUUID().slice(0, 8)}`,
        DurationSeconds: 900,
      }),
    )
    return {accessKeyId: c!.AccessKeyId!, secretAccessKey: c!.SecretAccessKey!, sessionToken: c!.SessionToken!}
  }
  return {
    url,
    assumeRole,
    freeze: () => process.kill(-child.pid!, 'SIGSTOP'),
    thaw: () => process.kill(-child.pid!, 'SIGCONT'),
    async listObjects(bucket) {
      const c = await assumeRole()
      const script =
        'import boto3,sys,json;s3=boto3.client("s3",endpoint_url=sys.argv[1],region_name="us-east-1",aws_access_key_id=sys.argv[3],aws_secret_access_key=sys.argv[4],aws_session_token=sys.argv[5]);print(json.dumps([o["Key"] for o in s3.list_objects_v2(Bucket=sys.argv[2]).get("Contents",[])]))'
      return JSON.parse(
        execFileSync(python, ['-c', script, url, bucket, c.accessKeyId, c.secretAccessKey, c.sessionToken], {
          encoding: 'utf8',
        }),
      ) as string[]
    },
  }
}

const isoSeconds = (epochMs: number) => new Date(Math.floor(epochMs / 1000) * 1000).toISOString().replace('.000Z', 'Z')

/** A Connect AWS integration: each exchange assumes the role in moto and reports a short lifetime. */
export function awsIntegration(
  moto: Moto,
  lifetimeSeconds: number,
  verifier?: TokenVerifier,
): FakeIntegration & {issued: Array<{accessKeyId: string; issuedAt: number; expiresAt: number}>} {
  const issued: Array<{accessKeyId: string; issuedAt: number; expiresAt: number}> = []
  return {
    name: 'AWS (moto)',
    template: 'aws',
    issued,
    async issue() {
      const creds = await moto.assumeRole()
      const expiresAt = Math.floor(Date.now() / 1000) + lifetimeSeconds
      verifier?.registerAws({...creds, expiresAt})
      issued.push({accessKeyId: creds.accessKeyId, issuedAt: Date.now() / 1000, expiresAt})
      const body = {...creds, expiration: isoSeconds(expiresAt * 1000)}
      return {
        access_token: Buffer.from(JSON.stringify(body)).toString('base64'),
        issued_token_type: 'urn:ietf:params:aws:token-type:credentials',
        token_type: 'aws_credentials',
      }
    },
  }
}

const b64url = (value: Buffer | string) => Buffer.from(value).toString('base64url')

/** Entra-style access tokens (HS256 JWTs) whose audience follows the requested scope, as Azure issues them. */
export function entraIntegration(
  upn: string,
  lifetimeSeconds: number,
  verifier?: TokenVerifier,
): FakeIntegration & {issued: Array<{aud: string; exp: number}>} {
  const kid = `k${randomUUID().replaceAll('-', '')}`
  const key = randomBytes(32).toString('hex')
  verifier?.registerJwtKey(kid, key)
  const issued: Array<{aud: string; exp: number}> = []
  return {
    name: 'Azure (fake Entra ID)',
    template: 'azure',
    issued,
    async issue({scope}) {
      const aud = (scope ?? 'https://management.azure.com/.default').replace(/\/\.default$/, '')
      const now = Math.floor(Date.now() / 1000)
      const claims = {
        aud,
        iss: 'https://sts.windows.net/00000000-0000-0000-0000-000000000000/',
        iat: now,
        nbf: now - 5,
        exp: now + lifetimeSeconds,
        upn,
        oid: randomUUID(),
        jti: randomUUID(),
      }
      const unsigned = `${b64url(JSON.stringify({alg: 'HS256', typ: 'JWT', kid}))}.${b64url(JSON.stringify(claims))}`
      const token = `${unsigned}.${b64url(createHmac('sha256', key).update(unsigned).digest())}`
      issued.push({aud, exp: claims.exp})
      return {
        access_token: token,
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        token_type: 'Bearer',
        expires_in: lifetimeSeconds,
      }
    },
  }
}

/** Opaque Google access tokens with expires_in, as a custom integration would return. */
export function googleIntegration(lifetimeSeconds: number): FakeIntegration & {issued: string[]} {
  const issued: string[] = []
  return {
    name: 'Google (custom)',
    template: 'custom',
    issued,
    async issue() {
      const token = `ya29.fake-${randomBytes(16).toString('hex')}`
      issued.push(token)
      return {
        access_token: token,
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        token_type: 'Bearer',
        expires_in: lifetimeSeconds,
      }
    },
  }
}

export async function startGcsEmulator(bucket: string): Promise<string | undefined> {
  const python = emulatorsPython()
  if (!python) return undefined
  const port = await freePort()
  const bin = join(python, '..', 'gcp-storage-emulator')
  const child = startProcess(bin, [
    'start',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--in-memory',
    '--default-bucket',
    bucket,
  ])
  const url = `http://127.0.0.1:${port}`
  await waitForHttp(`${url}/storage/v1/b`, child, 'gcp-storage-emulator')
  return url
}

/** Azurite's blob service over HTTPS with basic OAuth (it checks a Bearer token's issuer, audience and
 * lifetime, not its signature), and the self-signed certificate clients must trust. */
export async function startAzuriteHttps(): Promise<{url: string; certFile: string}> {
  const dir = tempDir('azurite-tls-')
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    {stdio: 'ignore'},
  )
  const port = await freePort()
  const bin = join(REPO_ROOT, 'node_modules/.bin/azurite-blob')
  const child = startProcess(
    bin,
    [
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(port),
      '--inMemoryPersistence',
      '--skipApiVersionCheck',
      '--silent',
      '--disableTelemetry',
      '--cert',
      certFile,
      '--key',
      keyFile,
      '--oauth',
      'basic',
    ],
    {NODE_EXTRA_CA_CERTS: certFile},
  )
  const url = `https://127.0.0.1:${port}/devstoreaccount1`
  for (let i = 0; i < 120 && child.exitCode === null; i++) {
    try {
      execFileSync('curl', ['-s', '--cacert', certFile, '-o', '/dev/null', `https://127.0.0.1:${port}/`], {
        stdio: 'ignore',
      })
      return {url, certFile}
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
  throw new Error('Azurite over HTTPS did not start')
}
