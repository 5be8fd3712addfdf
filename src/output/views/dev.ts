import type {DevDownResult, DevStatusResult, DevUpResult} from '../../core/dev.js'
import {keyValues} from '../table.js'

export function showDevUp(result: DevUpResult): string {
  return [
    `MLflow ${result.mlflowVersion} (${result.storage} storage) ${result.alreadyRunning ? 'is already running' : 'is running'} for ${result.bundleDir}`,
    keyValues([
      ['Tracking URI', result.trackingUri],
      ['API key', result.apiKey],
      ['UI', result.uiUrl],
      ['Data dir', result.dataDir],
      ['Logs', `mlflowctl dev logs ${result.bundleDir}`],
    ]),
    '',
    'Use it from Python (the dev proxy accepts the key as "Key" like Connect, and as the Bearer token the MLflow client sends):',
    `  export MLFLOW_TRACKING_URI=${result.trackingUri}`,
    `  export MLFLOW_TRACKING_TOKEN=${result.apiKey}`,
  ].join('\n')
}

export function showDevStatus(result: DevStatusResult): string {
  if (!result.endpoint)
    return [
      `Not running (${result.phase}). Start it with: mlflowctl dev up ${result.bundleDir}`,
      `Data dir: ${result.dataDir}${result.phase === 'never started' ? ' (created by the first dev up)' : ''}`,
    ].join('\n')
  const ops = result.ops ?? {}
  const schema =
    ops.dbRevision === undefined
      ? 'unknown (ops endpoint did not answer)'
      : `${ops.dbRevision} (expected ${ops.expectedHead}, ${ops.schemaState})`
  return keyValues([
    ['State', result.running ? 'running' : `unhealthy (/health answered ${result.health || 'nothing'})`],
    ['MLflow', `${result.endpoint.mlflowVersion} (${result.endpoint.appMode})`],
    ['Storage', String(ops.storageMode ?? result.endpoint.storage)],
    ['Schema', schema],
    ['Tracking URI', result.endpoint.trackingUri],
    [
      'Data dir',
      `${result.endpoint.dataDir}${typeof ops.dataDirFreeBytes === 'number' ? ` (${(ops.dataDirFreeBytes / 2 ** 30).toFixed(1)} GiB free)` : ''}`,
    ],
    ['Supervisor pid', String(result.endpoint.supervisorPid)],
    ['API key', `printed by dev up only: run mlflowctl dev up ${result.bundleDir} again to see it`],
  ])
}

export function showDevDown(result: DevDownResult): string {
  return result.wasRunning
    ? `Stopped. The data in ${result.dataDir} is kept for the next dev up.`
    : 'Not running; nothing to stop.'
}
