// Errors come from one catalog: each code is thrown by one class, so it has one exit code wherever it is raised
// (README "Exit codes"), and the layer that throws them (core, adapters, errors.ts) does not depend on oclif.
import assert from 'node:assert/strict'
import {readdirSync, readFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

import {ERROR_CODES, ERROR_NOTES} from '../../src/error-codes.js'
import {ConfigError, ExitCode, InternalError, UsageError} from '../../src/errors.js'
import {toMlflowctlError} from '../../src/output/errors.js'

const SRC = fileURLToPath(new URL('../../src', import.meta.url))

function sources(dir: string): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  )
}

describe('error catalog', () => {
  it('gives every error code one class (so one exit code) across the sources', () => {
    const classesOf = new Map<string, Set<string>>()
    let found = 0
    for (const file of sources(SRC)) {
      for (const match of readFileSync(file, 'utf8').matchAll(
        /new (UsageError|ConfigError|AuthError|ExternalError|CheckFailedError)\(\s*'([A-Z][A-Z0-9_]+)'/g,
      )) {
        found++
        const seen = classesOf.get(match[2]) ?? new Set<string>()
        seen.add(`${match[1]} (${relative(SRC, file)})`)
        classesOf.set(match[2], seen)
      }
    }
    assert.ok(found > 100, `only ${found} typed errors found: has the pattern changed?`)
    // The catalog (and so the README's table) lists each of them under its class's exit code, once.
    const exitOf = {UsageError: 2, ConfigError: 3, AuthError: 4, ExternalError: 5, CheckFailedError: 6}
    const listed = new Map(
      Object.entries(ERROR_CODES).flatMap(([exit, codes]) => codes.map((code) => [code, Number(exit)] as const)),
    )
    assert.equal(listed.size, Object.values(ERROR_CODES).flat().length, 'a code is listed under two exit codes')
    const unlisted = [...classesOf]
      .map(([code, seen]) => [code, exitOf[[...seen][0].split(' ')[0] as keyof typeof exitOf]] as const)
      .filter(([code, exit]) => listed.get(code) !== exit)
      .map(([code, exit]) => `${code}: raised with exit ${exit}, listed under ${listed.get(code) ?? 'nothing'}`)
    assert.deepEqual(unlisted, [], 'src/error-codes.ts')
    for (const code of Object.keys(ERROR_NOTES)) assert.ok(listed.has(code), `a note for ${code}, which is not listed`)
    const conflicts = [...classesOf].filter(([, seen]) => new Set([...seen].map((s) => s.split(' ')[0])).size > 1)
    assert.deepEqual(
      conflicts.map(([code, seen]) => `${code}: ${[...seen].join(', ')}`),
      [],
    )
  })

  it('has one code for "no Connect server or API key configured"', () => {
    const text = sources(SRC)
      .map((file) => readFileSync(file, 'utf8'))
      .join('\n')
    for (const retired of ['SERVER_REQUIRED', 'API_KEY_REQUIRED', 'CONNECT_REQUIRED'])
      assert.ok(!text.includes(`'${retired}'`), `${retired} is still thrown`)
    assert.match(text, /new ConfigError\('CONNECT_NOT_CONFIGURED'/)
  })

  it('keeps oclif out of core, the adapters and errors.ts', () => {
    const offenders = sources(SRC)
      .filter((file) => /\/(core|adapters)\//.test(file) || (file.endsWith('/errors.ts') && !file.includes('/output/')))
      .filter((file) => /from '@oclif\//.test(readFileSync(file, 'utf8')))
    assert.deepEqual(
      offenders.map((file) => relative(SRC, file)),
      [],
    )
  })
})

describe('toMlflowctlError', () => {
  const fsError = (code: string, path = '/srv/missing') =>
    Object.assign(new Error(`${code}: x, open '${path}'`), {code, path, syscall: 'open', errno: -2})

  it('maps file-system errors nobody mapped to typed errors that name the path', () => {
    const missing = toMlflowctlError(fsError('ENOENT'))
    assert.ok(missing instanceof ConfigError)
    assert.equal(missing.code, 'PATH_NOT_FOUND')
    assert.equal(missing.exit, ExitCode.Config)
    assert.match(missing.message, /\/srv\/missing does not exist/)
    assert.equal(toMlflowctlError(fsError('EACCES')).code, 'PATH_NOT_ACCESSIBLE')
    assert.equal(toMlflowctlError(fsError('ENOTDIR')).exit, ExitCode.Usage)
    assert.equal(toMlflowctlError(fsError('ENOSPC')).code, 'DISK_FULL')
    assert.equal(toMlflowctlError(fsError('ENOSPC')).exit, ExitCode.External)
  })

  it('leaves typed errors alone and reports anything else as a bug (exit 1)', () => {
    const typed = new UsageError('X', 'y')
    assert.equal(toMlflowctlError(typed), typed)
    const bug = toMlflowctlError(new TypeError('undefined is not a function'))
    assert.ok(bug instanceof InternalError)
    assert.match(bug.suggestionList[0], /This is a bug in mlflowctl/)
    // An errno-like error without a path is not a file-system error.
    assert.equal(
      toMlflowctlError(Object.assign(new Error('socket'), {code: 'ECONNRESET', syscall: 'read'})).exit,
      ExitCode.Internal,
    )
  })
})
