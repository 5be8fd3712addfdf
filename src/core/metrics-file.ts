// A node-exporter textfile (--metrics-file): how the last run of a command went, in Prometheus' text format, so that
// cron-run backups and checks are monitored the way operators already monitor cron jobs. Pure.

export interface CommandRun {
  /** The command's ID with spaces: `backup create`. */
  command: string
  /** What it ran on: a GUID, a source, a server. */
  target: string
  exitCode: number
  startedAt: number
  finishedAt: number
  /** Bytes the run wrote or read (a backup's size), when it has such a number. */
  bytes?: number
  /** Per deployment, for fleet commands. */
  members?: Array<{target: string; exitCode: number}>
}

const escape = (value: string) => value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

/** The last success time recorded in an earlier file of the same command and target (kept across failed runs). */
export function previousSuccess(
  text: string | undefined,
  run: Pick<CommandRun, 'command' | 'target'>,
): number | undefined {
  if (!text) return undefined
  const labels = `{command="${escape(run.command)}",target="${escape(run.target)}"}`
  const line = text
    .split('\n')
    .find((candidate) => candidate.startsWith(`mlflowctl_command_last_success_timestamp_seconds${labels} `))
  const value = line ? Number(line.split(' ').at(-1)) : Number.NaN
  return Number.isFinite(value) ? value : undefined
}

export function renderMetricsFile(run: CommandRun, previous?: string): string {
  const labels = `{command="${escape(run.command)}",target="${escape(run.target)}"}`
  const seconds = (ms: number) => String(Math.round(ms) / 1000)
  const lastSuccess = run.exitCode === 0 ? run.finishedAt / 1000 : previousSuccess(previous, run)
  const lines: string[] = []
  const metric = (name: string, type: string, help: string, values: Array<[string, string | number]>) => {
    if (values.length === 0) return
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labelSet, value] of values) lines.push(`${name}${labelSet} ${value}`)
  }
  metric('mlflowctl_command_last_run_timestamp_seconds', 'gauge', 'When the last run of the command ended.', [
    [labels, seconds(run.finishedAt)],
  ])
  metric(
    'mlflowctl_command_last_success_timestamp_seconds',
    'gauge',
    'When the last successful run of the command ended (kept from earlier runs while it fails).',
    lastSuccess === undefined ? [] : [[labels, String(lastSuccess)]],
  )
  metric('mlflowctl_command_duration_seconds', 'gauge', 'How long the last run took.', [
    [labels, seconds(run.finishedAt - run.startedAt)],
  ])
  metric('mlflowctl_command_exit_code', 'gauge', 'Exit code of the last run (0 is success).', [[labels, run.exitCode]])
  metric('mlflowctl_command_success', 'gauge', '1 when the last run succeeded.', [[labels, run.exitCode === 0 ? 1 : 0]])
  metric(
    'mlflowctl_command_bytes',
    'gauge',
    'Bytes the last run produced (a backup: its stored size).',
    run.bytes === undefined ? [] : [[labels, run.bytes]],
  )
  metric(
    'mlflowctl_command_member_exit_code',
    'gauge',
    'Exit code of the last run on each deployment of a fleet command.',
    (run.members ?? []).map((member) => [
      `{command="${escape(run.command)}",target="${escape(run.target)}",guid="${escape(member.target)}"}`,
      member.exitCode,
    ]),
  )
  return `${lines.join('\n')}\n`
}
