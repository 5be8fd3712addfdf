// Damaged and tampered copies of a real backup: verify and restore agree on exit 6 (BACKUP_CORRUPT) with the
// specific reason, and a failed restore writes nothing into its target.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {before, describe, it} from 'node:test'
import {gunzipSync, gzipSync} from 'node:zlib'

import Database from 'better-sqlite3'

import {rewriteArchive} from '../support/archives.js'
import {runCli, tempDir} from '../support/cli.js'

const work = tempDir('damaged-')
let original = ''

/** Patches a tar header field and its checksum (tar's header checksum is the byte sum with the field blank). */
function patchHeader(tar: Buffer, headerOffset: number, field: {at: number; length: number; value: string}): void {
  tar.write(field.value.padEnd(field.length, '\0'), headerOffset + field.at, field.length, 'latin1')
  tar.fill(' ', headerOffset + 148, headerOffset + 156)
  let sum = 0
  for (let i = headerOffset; i < headerOffset + 512; i++) sum += tar[i]
  tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, headerOffset + 148, 8, 'latin1')
}

describe('damaged archives: verify and restore both exit 6 with the reason', () => {
  before(async () => {
    const appData = join(work, 'app-data')
    mkdirSync(join(appData, 'artifacts', '1', 'run', 'artifacts'), {recursive: true})
    const db = new Database(join(appData, 'mlflow.db'))
    db.exec(
      "CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ('dc11669786a5'); INSERT INTO experiments VALUES (0, 'Default'), (1, 'second')",
    )
    db.close()
    // Incompressible bytes and text, so that damage at 10 %, 50 % and near the end lands in different entries.
    writeFileSync(join(appData, 'artifacts', '1', 'run', 'artifacts', 'model.bin'), randomBytes(300_000))
    writeFileSync(join(appData, 'artifacts', '1', 'run', 'artifacts', 'log.txt'), 'step,loss\n'.repeat(20_000))
    const repo = join(work, 'repo')
    const created = await runCli([
      'backup',
      'create',
      '--source',
      appData,
      '--repo',
      repo,
      '--format',
      'archive',
      '--json',
    ])
    assert.equal(created.code, 0, created.stdout + created.stderr)
    original = join(
      repo,
      readdirSync(repo).find((name) => name.endsWith('.tar.gz'))!,
    )
  })

  // A flipped byte shows up as whichever check meets it first: gzip's CRC, an entry's SHA-256, or a deflate block
  // that now claims more data than there is (the archive holds random bytes, so where it lands varies by run).
  const flipped = /compressed data is damaged|does not match its SHA-256|truncated/
  const damaged: Array<[string, () => Promise<Buffer> | Buffer, RegExp]> = [
    ['a byte flipped in the middle', () => flip(0.5), flipped],
    ['a byte flipped near the end', () => flip(-30), flipped],
    ["a byte flipped in gzip's checksum", () => flip(-6), /compressed data is damaged/],
    [
      'a copy truncated at 10 %',
      () => readFileSync(original).subarray(0, Math.floor(readFileSync(original).length * 0.1)),
      /truncated/,
    ],
    [
      'a copy truncated at 90 %',
      () => readFileSync(original).subarray(0, Math.floor(readFileSync(original).length * 0.9)),
      /truncated/,
    ],
    [
      'an entry with a huge declared size',
      () => {
        const tar = gunzipSync(readFileSync(original))
        patchHeader(tar, 0, {at: 124, length: 12, value: (8 * 1024 ** 3).toString(8).padStart(11, '0')})
        return gzipSync(tar)
      },
      /declares \d+ bytes|structure is damaged|truncated/,
    ],
    [
      'the manifest present twice',
      () =>
        edited((name, data) =>
          name === 'manifest.json'
            ? [
                {name, data},
                {name, data},
              ]
            : null,
        ),
      /manifest\.json appears twice/,
    ],
    [
      'row counts edited in the manifest (the checksums still match)',
      () =>
        edited((name, data) =>
          name === 'manifest.json'
            ? [{name, data: Buffer.from(data.toString().replace('"experiments": 2', '"experiments": 3'))}]
            : null,
        ),
      /experiments.* holds 2 rows, the manifest (counts|says) 3/,
    ],
  ]

  for (const [label, make, reason] of damaged) {
    it(label, async () => {
      const file = join(work, `${label.replace(/\W+/g, '-')}.tar.gz`)
      writeFileSync(file, await make())
      const verified = await runCli(['backup', 'verify', file, '--json'])
      assert.equal(verified.code, 6, `verify: ${verified.stdout}${verified.stderr}`)
      assert.equal(verified.json!.error!.code, 'BACKUP_CORRUPT')
      assert.match(verified.json!.error!.message, reason)
      const target = join(work, `target-${label.replace(/\W+/g, '-')}`)
      const restored = await runCli(['backup', 'restore', file, '--to', target, '--json'])
      assert.equal(restored.code, 6, `restore: ${restored.stdout}${restored.stderr}`)
      assert.equal(restored.json!.error!.code, 'BACKUP_CORRUPT')
      assert.match(restored.json!.error!.message, reason)
      assert.ok(!existsSync(join(target, 'mlflow.db')), 'nothing was restored into the target')
    })
  }
})

function flip(at: number): Buffer {
  const bytes = Buffer.from(readFileSync(original))
  const index = at < 0 ? bytes.length + at : Math.floor(bytes.length * at)
  bytes[index] ^= 0xff
  return bytes
}

async function edited(edit: Parameters<typeof rewriteArchive>[2]): Promise<Buffer> {
  const file = join(work, `edited-${randomBytes(4).toString('hex')}.tar.gz`)
  await rewriteArchive(original, file, edit)
  return readFileSync(file)
}
