// Makes a real PostgreSQL check cloud database tokens the way RDS and Azure do. scripts/setup-pg-token-auth.sh
// points the token roles' pg_hba lines at an LDAP simple bind on 127.0.0.1:<verifierPort>; this is that
// LDAP server. PostgreSQL sends the password (the token) in the bind; the verifier accepts it only if it is
//
// - an RDS IAM token: a SigV4-presigned `connect` request for service rds-db, signed with credentials the
//   fake Connect issued (registered here), for this user, this endpoint and region, inside its 15-minute
//   window, while those credentials have not expired (tokens signed with expired temporary credentials
//   fail on RDS too);
// - an Entra-style JWT (HS256 with a key registered here) for the Azure PostgreSQL audience, unexpired,
//   whose upn is this user.
//
// Anything else gets LDAP invalidCredentials, and PostgreSQL answers "LDAP authentication failed" (RDS says
// "PAM authentication failed"). PAM was the first idea, but pam_exec truncates passwords at 511 bytes, and
// a token signed with STS credentials is longer.
import {createHash, createHmac, timingSafeEqual} from 'node:crypto'
import {createServer, type Server, type Socket} from 'node:net'
import {after} from 'node:test'

const AZURE_POSTGRES_AUDIENCE = 'https://ossrdbms-aad.database.windows.net'
const SKEW_SECONDS = 300

export interface IssuedAws {
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string
  expiresAt: number // epoch seconds
}

export class TokenVerifier {
  private readonly aws = new Map<string, IssuedAws>()
  private readonly jwtKeys = new Map<string, string>()
  /** Every decision, newest last: what a test asserts on and what a failing test prints. */
  readonly decisions: Array<{user: string; accepted: boolean; reason: string}> = []
  private server?: Server

  constructor(
    readonly endpoints: string[],
    readonly region: string,
  ) {}

  registerAws(credentials: IssuedAws): void {
    this.aws.set(credentials.accessKeyId, credentials)
  }

  registerJwtKey(kid: string, key: string): void {
    this.jwtKeys.set(kid, key)
  }

  /** Returns null when the token is accepted, else the reason. */
  check(user: string, token: string, now = Date.now() / 1000): string | null {
    try {
      if (token.includes('/?')) return this.checkRds(user, token, now)
      if (token.split('.').length === 3) return this.checkJwt(user, token, now)
      return 'not a token'
    } catch (error) {
      return `malformed token (${(error as Error).message})`
    }
  }

  private checkRds(user: string, token: string, now: number): string | null {
    const cut = token.indexOf('/?')
    const endpoint = token.slice(0, cut)
    if (!this.endpoints.includes(endpoint)) return `token is for ${endpoint}, not this server`
    const params = new URLSearchParams(token.slice(cut + 2))
    if (params.get('Action') !== 'connect' || params.get('DBUser') !== user)
      return 'not a connect request for this user'
    if (params.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256' || params.get('X-Amz-SignedHeaders') !== 'host')
      return 'unsupported signature'
    const [accessKey, date, region, service, terminal] = (params.get('X-Amz-Credential') ?? '').split('/')
    if (service !== 'rds-db' || terminal !== 'aws4_request' || region !== this.region)
      return 'credential scope is not rds-db in this region'
    const issued = this.aws.get(accessKey)
    if (!issued) return 'unknown access key'
    if (issued.expiresAt <= now) return 'the signing credentials have expired'
    if ((params.get('X-Amz-Security-Token') ?? '') !== issued.sessionToken) return 'wrong session token'
    const amzDate = params.get('X-Amz-Date') ?? ''
    const signedAt =
      Date.parse(amzDate.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z')) / 1000
    const expires = Number(params.get('X-Amz-Expires'))
    if (
      !(expires <= 900) ||
      !(signedAt - SKEW_SECONDS <= now && now <= signedAt + expires) ||
      !amzDate.startsWith(date)
    )
      return 'token outside its validity window'
    const encode = (value: string) =>
      encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    const query = [...params.entries()]
      .filter(([key]) => key !== 'X-Amz-Signature')
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${encode(k)}=${encode(v)}`)
      .join('&')
    let key: Buffer = createHmac('sha256', `AWS4${issued.secretAccessKey}`).update(date).digest()
    for (const part of [region, 'rds-db', 'aws4_request']) key = createHmac('sha256', key).update(part).digest()
    const signature = params.get('X-Amz-Signature') ?? ''
    // botocore presigns with UNSIGNED-PAYLOAD, the JS signer with the hash of the empty body.
    for (const payload of ['UNSIGNED-PAYLOAD', createHash('sha256').update('').digest('hex')]) {
      const canonical = ['GET', '/', query, `host:${endpoint}`, '', 'host', payload].join('\n')
      const toSign = [
        'AWS4-HMAC-SHA256',
        amzDate,
        `${date}/${region}/rds-db/aws4_request`,
        createHash('sha256').update(canonical).digest('hex'),
      ].join('\n')
      if (safeEqual(createHmac('sha256', key).update(toSign).digest('hex'), signature)) return null
    }
    return 'bad signature'
  }

  private checkJwt(user: string, token: string, now: number): string | null {
    const [head, body, signature] = token.split('.')
    const header = JSON.parse(Buffer.from(head, 'base64url').toString()) as {alg?: string; kid?: string}
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as {
      aud?: string
      exp?: number
      nbf?: number
      upn?: string
    }
    if (header.alg !== 'HS256') return 'unsupported JWT algorithm'
    const key = this.jwtKeys.get(header.kid ?? '')
    if (!key) return 'unknown signing key'
    if (!safeEqual(createHmac('sha256', key).update(`${head}.${body}`).digest('base64url'), signature))
      return 'bad JWT signature'
    if (claims.aud !== AZURE_POSTGRES_AUDIENCE) return 'token is not for Azure Database for PostgreSQL'
    if (!((claims.nbf ?? 0) - SKEW_SECONDS <= now && now < (claims.exp ?? 0))) return 'token expired'
    if (claims.upn !== user) return 'token is for another principal'
    return null
  }

  /** Serves LDAP simple binds on 127.0.0.1:port until the test file ends. */
  async listen(port: number): Promise<void> {
    this.server = createServer((socket) => this.serve(socket))
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject)
      this.server!.listen(port, '127.0.0.1', resolve)
    })
    after(() => new Promise<void>((resolve) => this.server!.close(() => resolve())))
  }

  private serve(socket: Socket): void {
    let buffer: Buffer = Buffer.alloc(0)
    socket.on('error', () => undefined)
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      // No bind is this large; malformed BER is refused by closing. Neither may crash the test runner.
      if (buffer.length > 64 * 1024) return void socket.destroy()
      try {
        buffer = this.answerBinds(socket, buffer)
      } catch {
        socket.destroy()
      }
    })
  }

  /** Answers every complete LDAP message in `buffer`; returns what is left of it. */
  private answerBinds(socket: Socket, input: Buffer): Buffer {
    let buffer = input
    for (;;) {
      const message = readTlv(buffer, 0)
      if (!message) return buffer
      buffer = buffer.subarray(message.end)
      const messageId = readTlv(message.value, 0)!
      const op = readTlv(message.value, messageId.end)!
      if (op.tag === 0x42) {
        socket.end() // UnbindRequest
        return Buffer.alloc(0)
      }
      if (op.tag !== 0x60) throw new Error('only BindRequest is spoken here')
      const version = readTlv(op.value, 0)!
      const name = readTlv(op.value, version.end)!
      const credentials = readTlv(op.value, name.end)!
      const user = /^uid=(.*),ou=mlflowctl-tokens$/.exec(name.value.toString('utf8'))?.[1] ?? ''
      const reason =
        credentials.tag === 0x80 ? this.check(user, credentials.value.toString('utf8')) : 'not a simple bind'
      this.decisions.push({user, accepted: reason === null, reason: reason ?? 'ok'})
      socket.write(bindResponse(messageId.value, reason === null ? 0 : 49, reason ?? ''))
    }
  }
}

function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

/** One BER tag-length-value at `offset`, or null when the buffer does not hold all of it yet. */
function readTlv(buffer: Buffer, offset: number): {tag: number; value: Buffer; end: number} | null {
  if (buffer.length < offset + 2) return null
  const tag = buffer[offset]
  let length = buffer[offset + 1]
  let start = offset + 2
  if (length & 0x80) {
    const bytes = length & 0x7f
    if (buffer.length < start + bytes) return null
    length = buffer.subarray(start, start + bytes).reduce((sum, byte) => sum * 256 + byte, 0)
    start += bytes
  }
  if (buffer.length < start + length) return null
  return {tag, value: buffer.subarray(start, start + length), end: start + length}
}

function tlv(tag: number, value: Buffer): Buffer {
  const length =
    value.length < 0x80 ? Buffer.from([value.length]) : Buffer.from([0x82, value.length >> 8, value.length & 0xff])
  return Buffer.concat([Buffer.from([tag]), length, value])
}

function bindResponse(messageId: Buffer, resultCode: number, diagnostic: string): Buffer {
  const body = Buffer.concat([
    tlv(0x0a, Buffer.from([resultCode])),
    tlv(0x04, Buffer.alloc(0)),
    tlv(0x04, Buffer.from(diagnostic)),
  ])
  return tlv(0x30, Buffer.concat([tlv(0x02, messageId), tlv(0x61, body)]))
}
