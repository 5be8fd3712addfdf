import {Flags, type Command} from '@oclif/core'

import {MlflowctlCommand} from './base-command.js'
import {parseContentGuid} from './core/backup/locations.js'
import {
  discoverFleet,
  mapBounded,
  outcomeWithoutRunning,
  summariseFleet,
  type FleetMember,
  type FleetSummary,
} from './core/fleet.js'
import {ExitCode} from './errors.js'
import {insecureFlag, metricsFileFlag, targetFlags} from './flags.js'
import type {FleetDeps} from './compose/fleet.js'
import {showFleetSummary} from './output/views/fleet.js'

/** The flags every `fleet` command shares: the server, which deployments, how many at once. */
export const fleetFlags = {
  ...targetFlags,
  insecure: insecureFlag,
  guid: Flags.string({
    summary: 'Only these deployments (GUIDs, comma-separated or repeated); default: every one the key can see.',
    multiple: true,
    env: 'MLFLOWCTL_GUIDS',
  }),
  jobs: Flags.integer({
    summary: 'Deployments worked on at once.',
    default: 4,
    min: 1,
    max: 64,
    env: 'MLFLOWCTL_JOBS',
  }),
  'metrics-file': metricsFileFlag,
}

/** --guid as given: comma-separated, repeated, or both; each checked. */
export function guidList(values: string[] | undefined): string[] | undefined {
  return values
    ?.flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter(Boolean)
    .map((guid) => parseContentGuid(guid, '--guid'))
}

/** A command that finds the mlflowctl deployments on a Connect server and works on each. */
export abstract class FleetCommand<T extends typeof Command> extends MlflowctlCommand<T> {
  private composed?: FleetDeps

  protected get fleetFlagValues() {
    return this.flags as unknown as {guid?: string[]; jobs: number}
  }

  protected async fleet(): Promise<FleetDeps> {
    if (this.composed) return this.composed
    const connection = this.connection('fleet')
    const connect = await this.deps.connect(connection)
    // Children read the server and key from these variables (never from argv, which `ps` shows).
    const flags = this.flags as Record<string, unknown>
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      MLFLOWCTL_SERVER: connection.server,
      MLFLOWCTL_API_KEY: connection.apiKey,
      ...(this.settings.caCertificate.value ? {MLFLOWCTL_CA_CERTIFICATE: this.settings.caCertificate.value} : {}),
      ...(flags.insecure ? {MLFLOWCTL_INSECURE: 'true'} : {}),
      // A profile named on the command line (one from the environment reaches the children as it is).
      ...(this.settings.profile.source === 'flag' ? {MLFLOWCTL_PROFILE: this.settings.profile.value} : {}),
    }
    // The fleet's own textfile is written once, by the fleet command. An ops token given in the environment belongs
    // to one deployment: sent to every other one, it would reach other teams' servers.
    delete env.MLFLOWCTL_METRICS_FILE
    delete env.MLFLOWCTL_OPS_TOKEN
    this.composed = await this.deps.fleet({
      connect,
      transfer: this.connectTransfer(),
      env,
      secrets: this.secrets(),
      configDir: this.settings.configDir,
    })
    const composed = this.composed
    this.onCleanup(() => composed.stop())
    return composed
  }

  protected async members(): Promise<FleetMember[]> {
    const guids = guidList(this.fleetFlagValues.guid)
    const fleet = await this.fleet()
    const me = await (await this.deps.connect(this.connection('fleet'))).currentUser()
    const members = await discoverFleet(fleet, {
      jobs: this.fleetFlagValues.jobs,
      guids,
      administrator: me.user_role === 'administrator',
    })
    this.err(`Found ${members.length} mlflowctl deployment(s) on ${this.settings.server.value}.`)
    return members
  }

  /** Runs one single-deployment command per member, `--jobs` at once; reports each as it ends. */
  protected async runEach(members: FleetMember[], args: (member: FleetMember) => string[]): Promise<FleetSummary> {
    const fleet = await this.fleet()
    const outcomes = await mapBounded(members, this.fleetFlagValues.jobs, async (member) => {
      const outcome = outcomeWithoutRunning(member) ?? (await fleet.run(member.guid, member.name, args(member)))
      const mark = outcome.skipped ? 'skip' : outcome.exitCode === 0 ? 'ok  ' : 'FAIL'
      this.err(`${mark} ${member.guid} ${member.name} (${outcome.skipped ?? `exit ${outcome.exitCode}`})`)
      return outcome
    })
    const summary = summariseFleet(outcomes)
    this.recordMetricTargets(outcomes.map((outcome) => ({target: outcome.guid, exitCode: outcome.exitCode})))
    return summary
  }

  /** Prints the summary table and exits with the worst member's exit code. */
  protected finish(summary: FleetSummary, what: string): void {
    this.out(showFleetSummary(summary))
    if (summary.exitCode !== ExitCode.Ok)
      this.setExitCode(summary.exitCode, {
        code: 'FLEET_MEMBER_FAILED',
        message: `${what} failed on ${summary.failed.length} of ${summary.outcomes.length} deployment(s): ${summary.failed.join(', ')}.`,
        suggestions: summary.outcomes.flatMap((outcome) =>
          (outcome.error?.suggestions ?? []).map((fix) => `${outcome.guid}: ${fix}`),
        ),
      })
  }
}
