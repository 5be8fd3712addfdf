import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {runCli} from '../support/cli.js'

// A password typed into a URL flag is masked as typed and percent-decoded, in the envelope and in the text.
const url = 'postgresql://mlflow:s3cr%40t-pw@127.0.0.1:9/mlflow'
const leaks = (text: string) => text.includes('s3cr%40t-pw') || text.includes('s3cr@t-pw')

describe('mlflowctl db (no server needed)', () => {
  it('db status: an unreachable database exits 5 with DATABASE_UNREACHABLE and no password', async () => {
    for (const json of [true, false]) {
      const result = await runCli(['db', 'status', '--db', url, ...(json ? ['--json'] : [])])
      assert.equal(result.code, 5, result.stdout + result.stderr)
      if (json) assert.equal(result.json!.error!.code, 'DATABASE_UNREACHABLE')
      assert.match(result.stdout + result.stderr, /postgresql:\/\/mlflow:\*\*\*@127\.0\.0\.1:9/)
      assert.ok(!leaks(result.stdout + result.stderr), result.stdout + result.stderr)
    }
  })

  it('db migrate --dry-run: the same, and --db and --guid exclude each other (exit 2)', async () => {
    const result = await runCli(['db', 'migrate', '--db', url, '--to', '3.17.2', '--dry-run', '--json'])
    assert.equal(result.code, 5, result.stdout)
    assert.ok(!leaks(result.stdout + result.stderr), result.stdout + result.stderr)
    const both = await runCli([
      'db',
      'migrate',
      '--db',
      url,
      '--guid',
      '0b0e8e8e-1111-2222-3333-444455556666',
      '--to',
      '3.17.2',
      '--json',
    ])
    assert.equal(both.code, 2, both.stdout)
    assert.ok(!leaks(both.stdout + both.stderr), both.stdout + both.stderr)
  })

  it('db status on SQL Server (reached through mssql; no server here): a refused connection exits 5, no password', async () => {
    const result = await runCli(['db', 'status', '--db', 'mssql://sa:S3cret-mssql-pw@127.0.0.1:9/mlflow', '--json'])
    assert.equal(result.code, 5, result.stdout + result.stderr)
    assert.equal(result.json!.error!.code, 'DATABASE_UNREACHABLE')
    assert.match(result.json!.error!.message, /127\.0\.0\.1/)
    assert.ok(!(result.stdout + result.stderr).includes('S3cret-mssql-pw'), result.stdout + result.stderr)
  })
})
