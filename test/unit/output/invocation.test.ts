import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {invocationPrefix, withInvocation, type InvocationProbe} from '../../../src/output/invocation.js'

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
  const names = ['backup', 'dev', 'init']
  it('rewrites commands, not prose', () => {
    assert.equal(
      withInvocation(
        'Run `mlflowctl dev up x` or mlflowctl --help; not a mlflowctl command; mlflowctl devices',
        'npx mlflowctl',
        names,
      ),
      'Run `npx mlflowctl dev up x` or npx mlflowctl --help; not a mlflowctl command; mlflowctl devices',
    )
  })
  it('leaves text alone when the prefix is the plain name', () => {
    assert.equal(withInvocation('mlflowctl dev up', 'mlflowctl', names), 'mlflowctl dev up')
  })
})
