import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {describe, it} from 'node:test'

// The committed manifest is what oclif uses at runtime; CI also checks it is fresh (git diff after build).
const manifest = JSON.parse(readFileSync(new URL('../../oclif.manifest.json', import.meta.url), 'utf8')) as {
  commands: Record<string, {flags: Record<string, {env?: string; name: string}>; summary?: string; examples?: string[]}>
}

describe('oclif.manifest.json', () => {
  it('lists the interface commands', () => {
    for (const id of [
      'init',
      'bundle',
      'dev:up',
      'dev:down',
      'dev:status',
      'dev:logs',
      'deploy',
      'rollback',
      'history',
      'client-env',
      'doctor',
      'backup:create',
      'backup:list',
      'backup:verify',
      'backup:prune',
      'backup:restore',
      'replica:status',
      'db:status',
      'db:migrate',
      'version:bump',
      'upgrade:plan',
      'upgrade:apply',
    ])
      assert.ok(manifest.commands[id], id)
  })

  it('lists commands in sorted order, so the file does not depend on the filesystem (scripts/sort-manifest.mjs)', () => {
    const ids = Object.keys(manifest.commands)
    assert.deepEqual(ids, [...ids].sort())
  })

  it('gives every flag an MLFLOWCTL_* env name (except --json, which has MLFLOWCTL_CONTENT_TYPE)', () => {
    for (const [id, command] of Object.entries(manifest.commands)) {
      for (const flag of Object.values(command.flags)) {
        if (flag.name === 'json') continue
        assert.match(flag.env ?? '', /^MLFLOWCTL_[A-Z0-9_]+$/, `${id} --${flag.name}`)
      }
    }
  })

  it('gives every command a one-sentence summary and an example', () => {
    for (const [id, command] of Object.entries(manifest.commands)) {
      assert.match(command.summary ?? '', /^[A-Z].{8,79}\.$/, id)
      assert.ok((command.examples ?? []).length > 0, id)
    }
  })
})
