// Composes what `doctor` diagnoses: a deployment on Connect (GUID from --guid or the deployment record, the ops
// token deploy saved) or, with --dev, the local instance of `dev up` (its proxy, key and ops token).
import {existsSync, readFileSync} from 'node:fs'

import type {Settings} from '../config/load.js'
import type {DevInstanceFacts, Sourced} from '../core/doctor/context.js'
import {devDoctorTarget as readDevTarget} from '../core/dev.js'
import {createDevDeps} from './dev.js'
import type {CommandDeps} from './command-deps.js'

export interface DoctorTarget {
  server: Sourced
  apiKey: Sourced
  guid: Sourced
  opsToken?: string
  ca?: Buffer
  dev?: DevInstanceFacts
}

const describeSource = (setting: {source: string; from?: string}) =>
  setting.from ? `${setting.source} ${setting.from}` : setting.source

/** Reads the deployment record and the saved ops token; never calls Connect (the checks do). */
export async function connectDoctorTarget(
  deps: CommandDeps,
  settings: Settings,
  options: {dir: string; guid?: string; guidSource: string},
): Promise<DoctorTarget> {
  const {server, apiKey, caCertificate} = settings
  const ca = caCertificate.value && existsSync(caCertificate.value) ? readFileSync(caCertificate.value) : undefined
  const store = deps.deploy({
    server: server.value ?? 'http://unset.invalid',
    apiKey: apiKey.value ?? '',
    ca,
    configDir: settings.configDir,
    dataDir: settings.dataDir,
  })
  const record = server.value && !options.guid ? await store.readRecord(options.dir, server.value) : undefined
  const guid: Sourced = options.guid
    ? {value: options.guid, source: options.guidSource}
    : {value: record?.guid, source: `deployment record in ${options.dir}`}
  const opsToken =
    process.env.MLFLOWCTL_OPS_TOKEN ||
    (server.value && guid.value ? await store.opsToken(server.value, guid.value) : undefined)
  return {
    server: {value: server.value, source: describeSource(server)},
    apiKey: {value: apiKey.value, source: describeSource(apiKey)},
    guid,
    opsToken,
    ca,
  }
}

/** Reads the dev instance's state and identity; never starts or calls it. */
export async function devDoctorTarget(settings: Settings, dir: string): Promise<DoctorTarget> {
  const deps = createDevDeps({cacheDir: settings.cacheDir, dataDir: settings.dataDir, env: process.env})
  const {facts, reach} = await readDevTarget(deps, dir)
  const source = `dev instance of ${dir}`
  return {
    server: {value: reach?.server, source},
    apiKey: {value: reach?.apiKey, source},
    guid: {value: facts.running?.guid, source},
    opsToken: reach?.opsToken,
    dev: facts,
  }
}
