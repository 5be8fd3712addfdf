// The one place a Connect API client is built, and the settings a connect:GUID transfer reaches the extension with.
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {ConnectClient, type ConnectClientOptions} from '../adapters/connect/client.js'
import type {ConnectTransferOptions} from '../adapters/connect/ops-client.js'
import {readJson, writePrivateJson} from '../adapters/fs/json-file.js'

export function connectClient(options: ConnectClientOptions): ConnectClient {
  return new ConnectClient(options)
}

/** Ops tokens `deploy` set on content, kept per server and GUID in the config dir (0600). */
const tokenPath = (configDir: string) => join(configDir, 'ops-tokens.json')

export async function savedOpsToken(configDir: string, server: string, guid: string): Promise<string | undefined> {
  return (await readJson<Record<string, string>>(tokenPath(configDir)))?.[`${server}|${guid}`]
}

export async function saveOpsToken(configDir: string, server: string, guid: string, token: string): Promise<void> {
  const all = (await readJson<Record<string, string>>(tokenPath(configDir))) ?? {}
  all[`${server}|${guid}`] = token
  await mkdir(configDir, {recursive: true, mode: 0o700})
  await writePrivateJson(tokenPath(configDir), all)
}

/**
 * From the command's settings (MlflowctlCommand.connectTransfer): the server, key and CA as every Connect command
 * reads them. The CA is read when a transfer first needs it, so a command that never reaches Connect is not
 * stopped by a CA setting it does not use.
 */
export function connectTransferOptions(settings: {
  server?: string
  apiKey?: string
  ca: () => Buffer | undefined
  insecure?: boolean
  configDir: string
}): ConnectTransferOptions {
  return {
    server: settings.server,
    apiKey: settings.apiKey,
    connect: () =>
      connectClient({
        server: settings.server!,
        apiKey: settings.apiKey!,
        ca: settings.ca(),
        insecure: settings.insecure,
      }),
    get ca() {
      return settings.ca()
    },
    insecure: settings.insecure,
    opsToken: async (server, guid) =>
      process.env.MLFLOWCTL_OPS_TOKEN || savedOpsToken(settings.configDir, server, guid),
  }
}
