import {after} from 'node:test'

import {detectPythonVersion} from '../../src/adapters/python/python.js'
import {FakeConnect, type FakeConnectOptions, type FakeUser} from '../fake-connect/server.js'
import {tempDir} from './cli.js'

export const PUBLISHER_KEY = 'fake-publisher-key-0123456789'
export const OTHER_KEY = 'fake-other-publisher-key-9876543210'
export const VIEWER_KEY = 'fake-viewer-key-5555555555'
export const ADMIN_KEY = 'fake-admin-key-7777777777'
export const USERS: Record<string, FakeUser> = {
  [PUBLISHER_KEY]: {guid: 'u-publisher', username: 'publisher', user_role: 'publisher'},
  [OTHER_KEY]: {guid: 'u-other', username: 'other', user_role: 'publisher'},
  [VIEWER_KEY]: {guid: 'u-viewer', username: 'viewer', user_role: 'viewer'},
  [ADMIN_KEY]: {guid: 'u-admin', username: 'admin', user_role: 'administrator'},
}

/** Starts a fake Connect for the current test file and stops it (and every app it runs) afterwards. */
export async function startFakeConnect(overrides: Partial<FakeConnectOptions> = {}): Promise<FakeConnect> {
  const python = process.env.MLFLOWCTL_PYTHON || 'python3'
  const fake = new FakeConnect({
    workDir: tempDir('fake-connect-'),
    users: USERS,
    cacheDir: process.env.MLFLOWCTL_CACHE_DIR!,
    python,
    pythonVersion: await detectPythonVersion(python),
    ...overrides,
  })
  await fake.start()
  after(() => fake.stop())
  return fake
}
