// `deploy-monitor`: a scheduled report on the same Connect server that runs fleet doctor's checks on the deployments
// it is given and renders a one-page status, which Connect emails when something fails. The bundle is a
// quarto-static document (the only kind Connect schedules besides R Markdown and Jupyter) whose Python runs
// templates/monitor/mlflowctl_monitor.py; its settings and ops tokens are the content's environment variables.
import {ExternalError, UsageError} from '../errors.js'
import {md5Hex, type BundleFile} from './bundle.js'
import {waitForTask, type DeployConnect} from './deploy.js'

export const MONITOR_DOCUMENT = 'mlflow-monitor.qmd'

export interface MonitorLimits {
  maxBackupAgeHours: number
  maxReplicaLagSeconds: number
  minFreePercent: number
  maxGrowthPercent: number
}

/** The bundle: the templates plus a manifest.json with their MD5s. */
export function renderMonitorBundle(
  templates: BundleFile[],
  options: {pythonVersion: string; toolVersion: string},
): BundleFile[] {
  const files = [...templates].sort((a, b) => a.path.localeCompare(b.path))
  if (!files.some((file) => file.path === MONITOR_DOCUMENT))
    throw new UsageError('BUNDLE_FILE_MISSING', `The monitor templates have no ${MONITOR_DOCUMENT}.`)
  const manifest = {
    version: 1,
    locale: 'en_US.UTF-8',
    metadata: {appmode: 'quarto-static', entrypoint: MONITOR_DOCUMENT},
    quarto: {engines: ['jupyter']},
    python: {
      version: options.pythonVersion,
      package_manager: {name: 'pip', package_file: 'requirements.txt'},
    },
    environment: {python: {requires: '>=3.9'}, quarto: {requires: '>=1.4'}},
    extension: {
      name: 'mlflow-monitor',
      title: 'MLflow deployments monitor',
      description: `Scheduled checks of MLflow deployments, rendered by mlflowctl ${options.toolVersion}.`,
      category: 'extension',
      tags: ['python', 'quarto'],
      minimumConnectVersion: '2025.10.0',
    },
    files: Object.fromEntries(files.map((file) => [file.path, {checksum: md5Hex(file.content)}])),
  }
  return [...files, {path: 'manifest.json', content: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`)}]
}

/** The report's environment: what it checks, each target's ops token, the limits. */
export function monitorEnvironment(options: {
  targets: string[]
  opsTokens: Record<string, string>
  limits: MonitorLimits
}): Array<{name: string; value: string}> {
  return [
    {name: 'MLFLOWCTL_MONITOR_TARGETS', value: options.targets.join(',')},
    {name: 'MLFLOWCTL_MONITOR_OPS_TOKENS', value: JSON.stringify(options.opsTokens)},
    {name: 'MLFLOWCTL_MONITOR_MAX_BACKUP_AGE_HOURS', value: String(options.limits.maxBackupAgeHours)},
    {name: 'MLFLOWCTL_MONITOR_MAX_REPLICA_LAG_SECONDS', value: String(options.limits.maxReplicaLagSeconds)},
    {name: 'MLFLOWCTL_MONITOR_MIN_FREE_PERCENT', value: String(options.limits.minFreePercent)},
    {name: 'MLFLOWCTL_MONITOR_MAX_GROWTH_PERCENT', value: String(options.limits.maxGrowthPercent)},
  ]
}

/** --every 15m / 2h / 1d / 1w → Connect's schedule type and its {"N": n}. */
export function parseEvery(text: string): {type: 'minute' | 'hour' | 'day' | 'week'; n: number} {
  const match = /^(\d+)\s*(m|min|h|d|w)$/.exec(text.trim())
  const n = match ? Number(match[1]) : 0
  if (!match || n < 1)
    throw new UsageError('USAGE', `--every ${text}: give a count and a unit, such as 15m, 1h, 1d or 1w.`)
  const type = ({m: 'minute', min: 'minute', h: 'hour', d: 'day', w: 'week'} as const)[match[2] as 'm']
  if (type === 'minute' && n < 5)
    throw new UsageError(
      'USAGE',
      `--every ${text}: at least 5m (each run renders the document and calls every target).`,
    )
  return {type, n}
}

/**
 * The schedule record Connect stores. A new one is created active (a render is published, and emailed when `email`
 * is set; Connect stores `activate: false` when it is omitted, and the schedule then runs without effect). An
 * existing one is replaced whole, keeping what the caller does not change.
 */
export function scheduleRecord(options: {
  existing?: Record<string, unknown>
  appId: number
  variantId: number
  every: {type: string; n: number}
  email: boolean
  now: Date
}): Record<string, unknown> {
  const wanted = {type: options.every.type, schedule: JSON.stringify({N: options.every.n}), email: options.email}
  if (options.existing) {
    const {next_run: _next, ...kept} = options.existing
    return {...kept, ...wanted}
  }
  return {
    ...wanted,
    start_time: options.now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    timezone: 'UTC',
    activate: true,
    app_id: options.appId,
    variant_id: options.variantId,
  }
}

export interface MonitorDeps {
  connect: {
    listContent(): Promise<Array<{guid: string; name?: string | null; owner_guid?: string | null}>>
    currentUser(): Promise<{guid: string}>
    createContent(name: string, title?: string): Promise<{guid: string}>
    getContent(guid: string): Promise<{guid: string; app_mode?: string | null; content_url?: string | null}>
    setEnvironment(guid: string, vars: Array<{name: string; value: string | null}>): Promise<void>
    uploadBundle(guid: string, archive: Buffer): Promise<{id: string}>
    deploy(guid: string, bundleId: string, activate?: boolean): Promise<string>
    getTask: DeployConnect['getTask']
    defaultVariant(guid: string): Promise<{id: number; appId: number} | undefined>
    variantSchedule(variantId: number): Promise<Record<string, unknown> | undefined>
    setSchedule(record: Record<string, unknown>, existingId?: number): Promise<Record<string, unknown>>
  }
  /** The bundle's files as a tar.gz (manifest.json last). */
  archive(files: BundleFile[]): Promise<Buffer>
  now(): number
}

export interface MonitorOptions {
  name: string
  /** The monitor's own content, when updating one that exists. */
  guid?: string
  bundle: BundleFile[]
  environment: Array<{name: string; value: string}>
  every: {type: 'minute' | 'hour' | 'day' | 'week'; n: number}
  email: boolean
  timeoutMs: number
}

export interface MonitorResult {
  guid: string
  created: boolean
  bundleId: string
  contentUrl?: string
  schedule: {id: number; type: string; n: number; email: boolean; activate: boolean}
}

/**
 * Creates (or finds by name among the user's own content) the monitor's content, sets its environment, deploys the
 * bundle (Connect renders it once as it deploys: the first run of the checks) and sets its schedule.
 */
export async function deployMonitor(
  deps: MonitorDeps,
  options: MonitorOptions,
  report: (line: string) => void,
): Promise<MonitorResult> {
  const {connect} = deps
  let guid = options.guid
  let created = false
  if (!guid) {
    const me = await connect.currentUser()
    guid = (await connect.listContent()).find((item) => item.name === options.name && item.owner_guid === me.guid)?.guid
  }
  if (guid) {
    const content = await connect.getContent(guid)
    if (content.app_mode && !['quarto-static', 'unknown'].includes(content.app_mode))
      throw new UsageError(
        'APP_MODE_CHANGED',
        `Content ${guid} is ${content.app_mode}, not a monitor (quarto-static): choose another --name.`,
      )
  } else {
    guid = (await connect.createContent(options.name, 'MLflow deployments monitor')).guid
    created = true
  }
  await connect.setEnvironment(guid, options.environment)
  const bundle = await connect.uploadBundle(guid, await deps.archive(options.bundle))
  report(`Uploaded bundle ${bundle.id}; Connect renders it (the first run of the checks)...`)
  await waitForTask({connect, now: deps.now}, guid, bundle.id, true, options.timeoutMs, report, [
    "The report's log is in the content's dashboard; a render that fails is retried by the next scheduled run.",
  ])
  const variant = await connect.defaultVariant(guid)
  if (!variant)
    throw new ExternalError('MONITOR_NOT_SCHEDULABLE', `Connect offers no variant of ${guid} to schedule.`, {
      suggestions: ['Check that the content rendered (its dashboard), then run deploy-monitor again.'],
    })
  const existing = await connect.variantSchedule(variant.id)
  const stored = await connect.setSchedule(
    scheduleRecord({
      existing,
      appId: variant.appId,
      variantId: variant.id,
      every: options.every,
      email: options.email,
      now: new Date(deps.now()),
    }),
    existing ? Number(existing.id) : undefined,
  )
  const content = await connect.getContent(guid)
  return {
    guid,
    created,
    bundleId: bundle.id,
    contentUrl: content.content_url ?? undefined,
    schedule: {
      id: Number(stored.id),
      type: String(stored.type),
      n: (JSON.parse(String(stored.schedule)) as {N: number}).N,
      email: Boolean(stored.email),
      activate: Boolean(stored.activate),
    },
  }
}
