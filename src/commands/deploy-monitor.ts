import {Flags} from '@oclif/core'

import {MlflowctlCommand} from '../base-command.js'
import {discoverFleet} from '../core/fleet.js'
import {
  deployMonitor,
  monitorEnvironment,
  parseEvery,
  renderMonitorBundle,
  type MonitorResult,
} from '../core/monitor.js'
import {parseDuration} from '../core/units.js'
import {guidList} from '../fleet-command.js'
import {insecureFlag, targetFlags} from '../flags.js'
import {keyValues} from '../output/table.js'

export default class DeployMonitor extends MlflowctlCommand<typeof DeployMonitor> {
  static summary = 'Deploy a scheduled report that checks MLflow deployments and emails on failure.'
  static description = `Deploys a small Quarto document (quarto-static) to the same Connect server and schedules it (--every). Each
run checks every deployment given (--guid; default: every mlflowctl deployment the key manages, as fleet list finds
them): the content answers, /health, the schema is current, the last backup's snapshot is younger than
--max-backup-age, the replica's lag, free space and storage growth since the last run. It renders a one-page status;
with --email (the default) Connect emails it to the report's subscribers when, and only when, a check fails.
Credentials come from the report's own environment on Connect: its CONNECT_API_KEY (the owner's key, which Connect
gives rendered content) and the ops tokens this machine saved at deploy, set as a variable of the content, never a
file of the bundle. Running it again updates the same content (found by --name among your own) and its schedule.
Deploying renders the report once: the first run. Exit codes: 0 deployed and scheduled, 2 bad flags, 3/4/5 Connect
refused or the render failed.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --every 1h',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --every 30m --max-backup-age 26h',
  ]
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({
      summary: 'Deployments to check (GUIDs, comma-separated or repeated); default: every one fleet list finds.',
      multiple: true,
      env: 'MLFLOWCTL_GUIDS',
    }),
    name: Flags.string({
      summary: "The report's content name (created once, then updated).",
      default: 'mlflow-monitor',
      env: 'MLFLOWCTL_MONITOR_NAME',
    }),
    every: Flags.string({
      summary: 'How often the checks run: 15m, 1h, 1d, 1w.',
      default: '1h',
      env: 'MLFLOWCTL_MONITOR_EVERY',
    }),
    email: Flags.boolean({
      summary: "Let Connect email the page to the report's subscribers when a check fails.",
      default: true,
      allowNo: true,
      env: 'MLFLOWCTL_MONITOR_EMAIL',
    }),
    'max-backup-age': Flags.string({
      summary: 'Fail a local-storage deployment whose last backup snapshot is older.',
      default: '26h',
      env: 'MLFLOWCTL_MAX_BACKUP_AGE',
    }),
    'max-replica-lag': Flags.string({
      summary: 'Fail a replicated deployment whose replica lags more.',
      default: '5m',
      env: 'MLFLOWCTL_MAX_REPLICA_LAG',
    }),
    'min-free-percent': Flags.integer({
      summary: "Fail when the data directory's free space falls below this percentage.",
      default: 10,
      min: 0,
      max: 100,
      env: 'MLFLOWCTL_MIN_FREE_PERCENT',
    }),
    'max-growth-percent': Flags.integer({
      summary: 'Fail when the stored bytes grew more than this since the last run.',
      default: 50,
      min: 1,
      env: 'MLFLOWCTL_MAX_GROWTH_PERCENT',
    }),
    timeout: Flags.integer({
      summary: 'Seconds to wait for the deploy task (which renders the report once).',
      default: 600,
      min: 1,
      env: 'MLFLOWCTL_TIMEOUT',
    }),
  }

  async run(): Promise<MonitorResult & {targets: string[]; withoutOpsToken: string[]}> {
    const every = parseEvery(this.flags.every)
    const limits = {
      maxBackupAgeHours: parseDuration(this.flags['max-backup-age'], '--max-backup-age') / 3_600_000,
      maxReplicaLagSeconds: parseDuration(this.flags['max-replica-lag'], '--max-replica-lag') / 1000,
      minFreePercent: this.flags['min-free-percent'],
      maxGrowthPercent: this.flags['max-growth-percent'],
    }
    const connection = this.connection('deploy-monitor')
    const connect = await this.deps.connect(connection)
    const monitor = await this.deps.monitor(connect)
    const given = guidList(this.flags.guid)
    const fleet = await this.deps.fleet({
      connect,
      transfer: this.connectTransfer(),
      env: process.env,
      secrets: this.secrets(),
      configDir: this.settings.configDir,
    })
    const me = await connect.currentUser()
    const targets = given?.length
      ? given
      : (await discoverFleet(fleet, {jobs: 4, administrator: me.user_role === 'administrator'}))
          .filter((member) => member.access === 'manage')
          .map((member) => member.guid)
    if (targets.length === 0)
      this.warnUser('No deployment to check: the report will say so on every run. Pass --guid, or deploy one first.')
    // MLFLOWCTL_OPS_TOKEN is one deployment's: it counts only when that one deployment is the target.
    const singleTargetToken = targets.length === 1 ? process.env.MLFLOWCTL_OPS_TOKEN : undefined
    const opsTokens: Record<string, string> = {}
    for (const guid of targets) {
      const token = singleTargetToken || (await fleet.opsToken(guid))
      if (token) opsTokens[guid] = token
    }
    this.addSecrets(...Object.values(opsTokens))
    const withoutOpsToken = targets.filter((guid) => !opsTokens[guid])
    if (withoutOpsToken.length > 0)
      this.warnUser(
        `No ops token saved here for ${withoutOpsToken.join(', ')}: the report checks only that they answer. Run this where they were deployed (or, for a single --guid, set MLFLOWCTL_OPS_TOKEN).`,
      )
    const bundle = renderMonitorBundle(await monitor.templates(), {
      pythonVersion: await monitor.pythonVersion(),
      toolVersion: this.config.version,
    })
    this.err(`Deploying the monitor "${this.flags.name}" for ${targets.length} deployment(s)...`)
    const result = await deployMonitor(
      monitor,
      {
        name: this.flags.name,
        bundle,
        environment: monitorEnvironment({targets, opsTokens, limits}),
        every,
        email: this.flags.email,
        timeoutMs: this.flags.timeout * 1000,
      },
      (line) => this.err(`  ${line}`),
    )
    this.out(
      keyValues([
        ['monitor', `${result.guid}${result.created ? ' (created)' : ''}`],
        ['url', result.contentUrl ?? '?'],
        ['checks', targets.join(', ') || '(none)'],
        ['schedule', `every ${result.schedule.n} ${result.schedule.type}(s), id ${result.schedule.id}`],
        ['email', result.schedule.email ? 'when a check fails' : 'off'],
      ]),
    )
    return {...result, targets, withoutOpsToken}
  }
}
