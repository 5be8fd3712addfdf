// The refusals of backup create/restore/verify/prune, db migrate and doctor, in process: each maps its flags to a
// typed error with the documented exit code, in the --json envelope, before touching anything.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import BackupCreate from '../../src/commands/backup/create.js'
import BackupPrune from '../../src/commands/backup/prune.js'
import BackupRestore from '../../src/commands/backup/restore.js'
import BackupVerify from '../../src/commands/backup/verify.js'
import DbMigrate from '../../src/commands/db/migrate.js'
import Doctor from '../../src/commands/doctor.js'
import {runInProcess} from '../support/in-process.js'
import {tempDir} from '../support/cli.js'

const env = {CONNECT_SERVER: undefined, CONNECT_API_KEY: undefined, MLFLOWCTL_CONFIG_DIR: tempDir('in-process-')}

describe('refusals (in process)', () => {
  const cases: Array<[string, {run(argv: string[], config: any): Promise<unknown>}, string[], number, string]> = [
    [
      'backup create from a missing source',
      BackupCreate,
      ['--source', '/nonexistent/app-data', '--repo', tempDir()],
      2,
      'SOURCE_NOT_FOUND',
    ],
    [
      'backup verify of an id the repository lacks',
      BackupVerify,
      ['20260101T000000Z-abcdef', '--repo', tempDir()],
      5,
      'BACKUP_NOT_FOUND',
    ],
    ['backup prune without a retention policy', BackupPrune, ['--repo', tempDir()], 2, 'NO_RETENTION_POLICY'],
    [
      'backup restore of an id the repository lacks',
      BackupRestore,
      ['20260101T000000Z-abcdef', '--repo', tempDir(), '--to', tempDir()],
      5,
      'BACKUP_NOT_FOUND',
    ],
    [
      'db migrate of a database file that is not there',
      DbMigrate,
      ['--db', 'sqlite:////nonexistent/mlflow.db', '--to', '3.17.2', '--dry-run'],
      2,
      'DATABASE_NOT_FOUND',
    ],
  ]
  for (const [title, command, argv, exit, code] of cases) {
    it(`${title}: exit ${exit}, ${code}`, async () => {
      const result = await runInProcess(command, [...argv, '--json'], {env})
      assert.equal(result.code, exit, result.stdout + result.stderr)
      assert.equal(result.json!.status, exit)
      assert.equal(result.json!.error!.code, code, result.stdout)
    })
  }

  it('doctor without a Connect server: its config check fails, exit 3, the checks in the envelope', async () => {
    const result = await runInProcess(Doctor, ['--json'], {env})
    assert.equal(result.code, 3, result.stdout + result.stderr)
    assert.equal(result.json!.status, 3)
    assert.ok(JSON.stringify(result.json).includes('config.server'), result.stdout)
    // status ≠ 0 ⇒ error.code, with the checks kept in result.
    assert.equal(result.json!.error!.code, 'DOCTOR_CONFIG_FAILED')
    assert.match(result.json!.error!.message, /config\.server/)
    assert.ok(Array.isArray(result.json!.result.checks))
  })
})
