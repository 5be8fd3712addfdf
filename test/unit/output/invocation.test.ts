import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {hintRewriter, invocationPrefix, withInvocation, type InvocationProbe} from '../../../src/output/invocation.js'

const probe = (overrides: Partial<InvocationProbe> = {}): InvocationProbe => ({
  env: {PATH: '/usr/bin:/opt/node/bin'},
  self: '/src/mlflowctl/bin/run.js',
  packageRoot: '/src/mlflowctl',
  cwd: '/home/me',
  realExecutable: () => undefined,
  ...overrides,
})

describe('invocationPrefix', () => {
  it('is mlflowctl when the first mlflowctl on PATH is this copy', () => {
    const found = (path: string) => (path === '/opt/node/bin/mlflowctl' ? '/src/mlflowctl/bin/run.js' : undefined)
    assert.equal(invocationPrefix(probe({realExecutable: found})), 'mlflowctl')
  })

  it('does not trust another install that comes first on PATH', () => {
    const found = (path: string) =>
      path === '/usr/bin/mlflowctl'
        ? '/usr/lib/old/run.js'
        : path === '/opt/node/bin/mlflowctl'
          ? '/src/mlflowctl/bin/run.js'
          : undefined
    assert.equal(invocationPrefix(probe({realExecutable: found})), 'node /src/mlflowctl/bin/run.js')
  })

  it('is npx mlflowctl inside the clone, and the script path elsewhere', () => {
    assert.equal(invocationPrefix(probe({cwd: '/src/mlflowctl/mlflow-demo'})), 'npx mlflowctl')
    assert.equal(invocationPrefix(probe({cwd: '/src/mlflowctl-other'})), 'node /src/mlflowctl/bin/run.js')
  })

  it('is what MLFLOWCTL_INVOCATION says, when set', () => {
    assert.equal(invocationPrefix(probe({env: {MLFLOWCTL_INVOCATION: 'mfc'}})), 'mfc')
  })
})

describe('withInvocation', () => {
  const ids = ['backup create', 'dev up', 'init', 'replica status']
  it('rewrites commands, not prose', () => {
    assert.equal(
      withInvocation(
        'Run `mlflowctl dev up x` or mlflowctl --help; not a mlflowctl command; mlflowctl devices',
        'npx mlflowctl',
        ids,
      ),
      'Run `npx mlflowctl dev up x` or npx mlflowctl --help; not a mlflowctl command; mlflowctl devices',
    )
  })
  it('leaves a topic name in prose alone, and rewrites the topic with --help', () => {
    // Given a topic that is also an English word ("replica"), as in a refusal of a directory.
    const text = '/srv/r is not an mlflowctl replica (no mlflowctl-replica.json); see mlflowctl replica --help.'
    // When hints are rewritten for oclif's command IDs
    const rewrite = hintRewriter('node /opt/m/bin/run.js', ['backup:create', 'init', 'replica:status'])
    // Then only the command is rewritten, never the prose.
    assert.equal(
      rewrite(text),
      '/srv/r is not an mlflowctl replica (no mlflowctl-replica.json); see node /opt/m/bin/run.js replica --help.',
    )
    assert.equal(
      withInvocation('mlflowctl replica status --url x', 'npx mlflowctl', ids),
      'npx mlflowctl replica status --url x',
    )
  })
  it('leaves text alone when the prefix is the plain name', () => {
    assert.equal(withInvocation('mlflowctl dev up', 'mlflowctl', ids), 'mlflowctl dev up')
  })
})
