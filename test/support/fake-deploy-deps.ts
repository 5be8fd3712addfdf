// A scripted Connect behind DeployDeps, shared by the deploy unit tests and the in-process command tests. It
// records every call (with the values that matter) so that "nothing changed" and "the flags arrived" can be asserted.
import type {DeployBundle, DeployDeps} from '../../src/core/deploy.js'
import type {ProbeResponse} from '../../src/core/verify-extension.js'

export const GUID = '0b0e8e8e-1111-2222-3333-444455556666'
export const SERVER = 'https://connect.example.com/'

export function bundleOf(appmode: 'python-api' | 'python-fastapi'): DeployBundle {
  return {
    info: {
      bundleFormat: 1,
      extensionVersion: '1',
      mlflowVersion: '3.17.2',
      appMode: appmode,
      storage: 'local',
      requiredEnv: [],
      renderedBy: 'test',
    },
    manifest: {
      version: 1,
      metadata: {appmode, entrypoint: 'app:app'},
      python: {version: '3.11.7', package_manager: {name: 'pip', package_file: 'requirements.txt'}},
      environment: {python: {requires: '>=3.10'}},
      extension: {version: '1'},
      files: {},
    },
    files: ['app.py'],
    archive: async () => Buffer.from('tar'),
  }
}

export interface Script {
  deployed?: string
  version?: string
  /** What a GET answers, by URL. */
  probe?: (url: string) => ProbeResponse
}

/** A healthy extension everywhere unless the script says otherwise. */
export const healthy = (url: string): ProbeResponse => {
  if (url.endsWith('version')) return {status: 200, body: '3.17.2'}
  if (url.endsWith('_mlflowctl/status'))
    return {status: 200, body: JSON.stringify({dbRevision: 'r1', expectedHead: 'r1'})}
  return {status: 200, body: 'ok'}
}

export function fakeDeps(bundle: DeployBundle, script: Script = {}) {
  const calls: string[] = []
  let clock = 0
  const deps: DeployDeps = {
    connect: {
      currentUser: async () => ({guid: 'u', username: 'publisher', user_role: 'publisher'}),
      serverVersion: async () => script.version,
      getContent: async (guid) => ({
        guid,
        app_mode: script.deployed ?? 'unknown',
        bundle_id: '7',
        locked: false,
        content_url: `${SERVER}content/${guid}/`,
      }),
      createContent: async () => ({guid: GUID}),
      updateContent: async () => void calls.push('updateContent'),
      setEnvironment: async (_guid, vars) => void calls.push(`setEnvironment ${vars.map((v) => v.name).join(',')}`),
      uploadBundle: async () => (calls.push('uploadBundle'), {id: '8'}),
      deploy: async (_guid, bundleId, activate = true) => (calls.push(`deploy ${bundleId} activate=${activate}`), 't'),
      getTask: async () => ({output: [], last: 0, finished: true, code: 0}),
      setVanity: async (_guid, path) => (calls.push(`setVanity ${path}`), path),
      setOAuthIntegrations: async (_guid, ids) => void calls.push(`setOAuthIntegrations ${ids.join(',')}`),
    },
    probe: {get: async (url) => (calls.push(`GET ${url.replace(SERVER, '/')}`), (script.probe ?? healthy)(url))},
    readBundle: async () => bundle,
    readRecord: async () => undefined,
    writeRecord: async () => void calls.push('writeRecord'),
    opsToken: async () => 'ops',
    saveOpsToken: async () => undefined,
    newToken: () => 'ops',
    appendHistory: async (event) => void calls.push(`history ${event.result}`),
    // A clock that moves only when deploy sleeps: waits end, and take no time.
    now: () => clock,
    sleep: async (ms) => void (clock += ms),
  }
  return {deps, calls}
}
