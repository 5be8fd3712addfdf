// Optional encryption of backup archives: AES-256-GCM over the whole gzip stream, with a key derived from
// a passphrase by scrypt (node:crypto). Layout: "MLFCENC1" | N (u32 BE) | r (u8) | p (u8) | salt (16) |
// IV (12) | ciphertext | tag (16). The tag is checked when the stream ends, so a reader trusts nothing
// before the whole archive has been read (verify and restore both read it whole first).
import {createCipheriv, createDecipheriv, randomBytes, scryptSync, type CipherGCM, type DecipherGCM} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {open, readFile, stat} from 'node:fs/promises'
import {Readable, Transform, type TransformCallback} from 'node:stream'

import {CheckFailedError, ConfigError} from '../../errors.js'
import {PASSPHRASE_ENV} from '../../core/backup/format.js'

const MAGIC = Buffer.from('MLFCENC1')
const SCRYPT = {N: 2 ** 15, r: 8, p: 1}
const HEADER_BYTES = MAGIC.length + 4 + 1 + 1 + 16 + 12
const TAG_BYTES = 16

function deriveKey(passphrase: string, salt: Buffer, params: {N: number; r: number; p: number}): Buffer {
  return scryptSync(passphrase, salt, 32, {...params, maxmem: 256 * params.N * params.r})
}

/** A Transform that writes the header, the ciphertext and, at the end, the tag. */
export function encryptStream(passphrase: string): Transform {
  const salt = randomBytes(16)
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', deriveKey(passphrase, salt, SCRYPT), iv) as CipherGCM
  const header = Buffer.alloc(HEADER_BYTES)
  MAGIC.copy(header, 0)
  header.writeUInt32BE(SCRYPT.N, 8)
  header.writeUInt8(SCRYPT.r, 12)
  header.writeUInt8(SCRYPT.p, 13)
  salt.copy(header, 14)
  iv.copy(header, 30)
  let started = false
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      if (!started) {
        started = true
        this.push(header)
      }
      callback(null, cipher.update(chunk))
    },
    flush(callback: TransformCallback) {
      if (!started) this.push(header)
      this.push(cipher.final())
      callback(null, cipher.getAuthTag())
    },
  })
}

/** --passphrase-file (first line, trimmed) or MLFLOWCTL_BACKUP_PASSPHRASE; undefined when neither is given. */
export async function resolvePassphrase(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  if (file) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (error) {
      throw new ConfigError(
        'PASSPHRASE_FILE_UNREADABLE',
        `Cannot read the passphrase file ${file} (${(error as NodeJS.ErrnoException).code}).`,
      )
    }
    const passphrase = text.split('\n')[0].trim()
    if (!passphrase) throw new ConfigError('PASSPHRASE_EMPTY', `The passphrase file ${file} is empty.`)
    return passphrase
  }
  return env[PASSPHRASE_ENV] || undefined
}

export async function isEncrypted(file: string): Promise<boolean> {
  const handle = await open(file, 'r')
  try {
    const head = Buffer.alloc(MAGIC.length)
    const {bytesRead} = await handle.read(head, 0, MAGIC.length, 0)
    return bytesRead === MAGIC.length && head.equals(MAGIC)
  } finally {
    await handle.close()
  }
}

/**
 * The archive's plaintext (gzip) bytes as a stream. Errors with BACKUP_DECRYPT_FAILED when the passphrase
 * is wrong or any byte was changed (GCM authentication), when the stream ends.
 * @throws ConfigError PASSPHRASE_REQUIRED when no passphrase is given
 */
export async function decryptedStream(file: string, passphrase: string | undefined): Promise<Readable> {
  if (!passphrase)
    throw new ConfigError('PASSPHRASE_REQUIRED', `${file} is encrypted.`, {
      suggestions: [`Give the passphrase with --passphrase-file FILE or the ${PASSPHRASE_ENV} environment variable.`],
    })
  const {size} = await stat(file)
  if (size < HEADER_BYTES + TAG_BYTES)
    throw new CheckFailedError('BACKUP_CORRUPT', `${file}: the encrypted archive is truncated.`)
  const handle = await open(file, 'r')
  const header = Buffer.alloc(HEADER_BYTES)
  const tag = Buffer.alloc(TAG_BYTES)
  try {
    await handle.read(header, 0, HEADER_BYTES, 0)
    await handle.read(tag, 0, TAG_BYTES, size - TAG_BYTES)
  } finally {
    await handle.close()
  }
  // The header is not authenticated until the tag is checked at the very end, so its scrypt parameters are
  // accepted only when they are the ones this tool writes: anything else could ask for minutes of CPU and GiBs.
  const params = {N: header.readUInt32BE(8), r: header.readUInt8(12), p: header.readUInt8(13)}
  if (params.N !== SCRYPT.N || params.r !== SCRYPT.r || params.p !== SCRYPT.p)
    throw new CheckFailedError(
      'BACKUP_CORRUPT',
      `${file}: its header asks for key-derivation parameters N=${params.N}, r=${params.r}, p=${params.p}; mlflowctl writes N=${SCRYPT.N}, r=${SCRYPT.r}, p=${SCRYPT.p} and derives with no others.`,
      {
        suggestions: [
          'Use another backup (mlflowctl backup list); this one was not written by mlflowctl or was changed.',
        ],
      },
    )
  const decipher = createDecipheriv(
    'aes-256-gcm',
    deriveKey(passphrase, header.subarray(14, 30), params),
    header.subarray(30, 42),
  ) as DecipherGCM
  decipher.setAuthTag(tag)
  const body = size - HEADER_BYTES - TAG_BYTES
  const source = body > 0 ? createReadStream(file, {start: HEADER_BYTES, end: size - TAG_BYTES - 1}) : Readable.from([])
  const decrypt = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      callback(null, decipher.update(chunk))
    },
    flush(callback: TransformCallback) {
      try {
        callback(null, decipher.final())
      } catch {
        callback(
          new CheckFailedError(
            'BACKUP_DECRYPT_FAILED',
            `${file}: the passphrase is wrong, or the archive was changed (authentication failed).`,
            {suggestions: ['Check the passphrase; if it is right, use another backup.']},
          ),
        )
      }
    },
  })
  source.on('error', (error: Error) => decrypt.destroy(error))
  return source.pipe(decrypt)
}
