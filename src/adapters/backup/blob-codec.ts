// How a snapshot repository stores a blob or a document: compressed (brotli, unless the bytes do not compress) and,
// in an encrypted repository, sealed with AES-256-GCM, so that every stored object is authenticated on its own.
// Stored form: [IV (12) | ciphertext | tag (16)] of [codec (1) | payload] when encrypted, else [codec | payload].
// A blob's ID is the SHA-256 of its bytes, or in an encrypted repository an HMAC-SHA256 with a key derived from the
// passphrase: plain hashes would let anyone holding the repository confirm that it contains a known file.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto'
import {promisify} from 'node:util'
import {brotliCompress, brotliCompressSync, brotliDecompress, constants} from 'node:zlib'

import {CheckFailedError, ConfigError} from '../../errors.js'
import {PASSPHRASE_ENV} from '../../core/backup/format.js'
import type {KeyParams} from '../../core/backup/snapshots.js'

const compress = promisify(brotliCompress)
/** Output in one piece per blob: zlib's default 16 KiB pieces cost a main-thread callback and a copy each. */
const OUTPUT_CHUNK = 512 * 1024
const decompress = promisify(brotliDecompress)
const RAW = 0
const BROTLI = 1
const IV_BYTES = 12
const TAG_BYTES = 16
/**
 * Quality 2: about 5× on MLflow's SQLite pages, compressed at 290 MB/s and opened at 580 MB/s a core (quality 3
 * packs no smaller and is slower; deflate opens faster but packs a quarter larger).
 */
const QUALITY = {params: {[constants.BROTLI_PARAM_QUALITY]: 2}, chunkSize: OUTPUT_CHUNK}
const PROBE = {params: {[constants.BROTLI_PARAM_QUALITY]: 1}}
const SCRYPT = {N: 2 ** 15, r: 8, p: 1}
const CHECK_TEXT = Buffer.from('mlflowctl snapshot repository')

export interface RepositoryKeys {
  encrypt: Buffer
  id: Buffer
}

const deriveKeys = async (passphrase: string, params: Pick<KeyParams, 'N' | 'r' | 'p' | 'salt'>) => {
  const derive = promisify(scrypt) as (p: string, s: Buffer, n: number, o: object) => Promise<Buffer>
  const key = await derive(passphrase, Buffer.from(params.salt, 'base64'), 64, {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 256 * params.N * params.r,
  })
  return {encrypt: key.subarray(0, 32), id: key.subarray(32)}
}

/** New key parameters for a repository's config, and the keys they give. */
export async function newKeys(passphrase: string): Promise<{params: KeyParams; keys: RepositoryKeys}> {
  const base = {...SCRYPT, salt: randomBytes(16).toString('base64')}
  const keys = await deriveKeys(passphrase, base)
  return {
    params: {
      kdf: 'scrypt',
      ...base,
      check: encryptWith(keys, Buffer.concat([Buffer.from([RAW]), CHECK_TEXT])).toString('base64'),
    },
    keys,
  }
}

/**
 * The keys of an encrypted repository from its passphrase. Key-derivation parameters other than the ones this tool
 * writes are refused before any work: a changed config could otherwise ask for minutes of CPU and GiBs of memory.
 * @throws ConfigError PASSPHRASE_REQUIRED, CheckFailedError BACKUP_DECRYPT_FAILED (wrong passphrase), BACKUP_CORRUPT
 */
export async function unlockKeys(
  where: string,
  params: KeyParams,
  passphrase: string | undefined,
): Promise<RepositoryKeys> {
  if (!passphrase)
    throw new ConfigError('PASSPHRASE_REQUIRED', `The repository ${where} is encrypted.`, {
      suggestions: [`Give the passphrase with --passphrase-file FILE or the ${PASSPHRASE_ENV} environment variable.`],
    })
  if (params.kdf !== 'scrypt' || params.N !== SCRYPT.N || params.r !== SCRYPT.r || params.p !== SCRYPT.p)
    throw new CheckFailedError(
      'BACKUP_CORRUPT',
      `${where}/config.json asks for key-derivation parameters mlflowctl never writes (${params.kdf} N=${params.N}, r=${params.r}, p=${params.p}).`,
    )
  const keys = await deriveKeys(passphrase, params)
  let opened: Buffer | undefined
  try {
    opened = decryptWith(keys, Buffer.from(params.check, 'base64'))
  } catch {
    opened = undefined
  }
  if (!opened || !timingSafeEqual(opened.subarray(1), CHECK_TEXT) || opened.length !== CHECK_TEXT.length + 1)
    throw new CheckFailedError('BACKUP_DECRYPT_FAILED', `The passphrase does not open the repository ${where}.`, {
      suggestions: ['Check the passphrase.'],
    })
  return keys
}

function encryptWith(keys: RepositoryKeys, plain: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv('aes-256-gcm', keys.encrypt, iv)
  return Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()])
}

/** @throws Error when the tag does not match (a changed byte, or another key) */
function decryptWith(keys: RepositoryKeys, sealed: Buffer): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new Error('too short to be sealed')
  const decipher = createDecipheriv('aes-256-gcm', keys.encrypt, sealed.subarray(0, IV_BYTES))
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
  return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()])
}

export const blobId = (raw: Buffer, keys: RepositoryKeys | undefined): string =>
  (keys ? createHmac('sha256', keys.id) : createHash('sha256')).update(raw).digest('hex')

/** Whether compressing is worth it: a quick pass over the first 16 KiB (model weights and archives do not shrink). */
function compressible(raw: Buffer): boolean {
  const probe = raw.subarray(0, 16 * 1024)
  return probe.length < 256 || brotliCompressSync(probe, PROBE).length < probe.length * 0.9
}

/** The stored form of a blob (compression runs on the libuv pool, so several seal in parallel). */
export async function seal(raw: Buffer, keys: RepositoryKeys | undefined): Promise<Buffer> {
  const packed = compressible(raw) ? await compress(raw, QUALITY) : undefined
  const body =
    packed && packed.length < raw.length
      ? Buffer.concat([Buffer.from([BROTLI]), packed])
      : Buffer.concat([Buffer.from([RAW]), raw])
  return keys ? encryptWith(keys, body) : body
}

/**
 * The bytes of a stored blob, checked against its ID (and, encrypted, its tag).
 * @throws CheckFailedError BACKUP_CORRUPT naming `what`
 */
export async function unseal(
  stored: Buffer,
  keys: RepositoryKeys | undefined,
  id: string | undefined,
  what: string,
): Promise<Buffer> {
  const corrupt = (why: string) =>
    new CheckFailedError('BACKUP_CORRUPT', `${what} ${why}.`, {
      suggestions: ['Run mlflowctl backup verify --read-data to find every damaged snapshot, and restore another one.'],
    })
  let body: Buffer
  try {
    body = keys ? decryptWith(keys, stored) : stored
  } catch {
    throw corrupt('fails authentication (a changed byte, or data written with another key)')
  }
  if (body.length === 0 || (body[0] !== RAW && body[0] !== BROTLI)) throw corrupt('has an unknown encoding')
  let raw: Buffer
  try {
    raw = body[0] === RAW ? body.subarray(1) : await decompress(body.subarray(1), {chunkSize: OUTPUT_CHUNK})
  } catch {
    throw corrupt('cannot be decompressed')
  }
  if (id !== undefined && blobId(raw, keys) !== id) throw corrupt('does not match its ID')
  return raw
}

/** A JSON document (index, tree) in stored form. */
export const sealJson = (value: unknown, keys: RepositoryKeys | undefined) =>
  seal(Buffer.from(JSON.stringify(value)), keys)

export async function unsealJson<T>(stored: Buffer, keys: RepositoryKeys | undefined, what: string): Promise<T> {
  const raw = await unseal(stored, keys, undefined, what)
  try {
    return JSON.parse(raw.toString('utf8')) as T
  } catch {
    throw new CheckFailedError('BACKUP_CORRUPT', `${what} is not valid JSON.`)
  }
}
