// Doctor checks of one layer: the extension: its ops status, schema, storage and credentials.
import {formatBytes} from '../units.js'
import type {CheckDefinition} from './runner.js'
import {parseOpsStatus} from '../extension-contract.js'
import type {MlflowctlError} from '../../errors.js'
import {pass, warn, fail, keyHeader, formatAge, type DoctorContext} from './context.js'

/** Seconds under two minutes, then minutes, then formatAge's hours and days. */
const formatLag = (ms: number) =>
  ms < 120_000 ? `${Math.round(ms / 100) / 10} s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)} min` : formatAge(ms)

export const extensionChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'extension.status',
    category: 'extension',
    title: 'Ops status endpoint',
    needs: ['mlflow.health'],
    unless: (ctx) =>
      ctx.input.opsToken
        ? undefined
        : 'no ops token for this content on this machine (mlflowctl deploy saves one; or pass --ops-token / MLFLOWCTL_OPS_TOKEN)',
    async run(ctx) {
      const answer = await ctx.probes.request(`${ctx.facts.content!.contentUrl}_mlflowctl/status`, {
        headers: {...keyHeader(ctx), 'X-Mlflowctl-Ops-Token': ctx.input.opsToken!},
      })
      if (answer.status === 401)
        return fail(
          'the ops token was refused',
          'Use the token that was deployed (it is in the config dir of the machine that deployed), or redeploy to set a new one.',
        )
      if (answer.status === 503)
        return fail('MLFLOWCTL_OPS_TOKEN is not set on the content', 'Redeploy with mlflowctl deploy, which sets it.')
      if (answer.status !== 200)
        return fail(
          `the ops status answered HTTP ${answer.status}`,
          'Read the content log; the database may be unreachable.',
        )
      try {
        ctx.facts.ops = parseOpsStatus(answer.body)
      } catch (error) {
        return fail(
          (error as Error).message,
          (error as MlflowctlError).suggestionList?.[0] ?? 'Redeploy the extension with this mlflowctl.',
        )
      }
      return pass(
        `storage mode ${ctx.facts.ops.storageMode}, MLflow ${ctx.facts.ops.mlflowVersion}${ctx.facts.ops.credentialsSource ? `, credentials from ${ctx.facts.ops.credentialsSource}` : ''}`,
      )
    },
  },
  {
    id: 'extension.schema',
    category: 'extension',
    title: 'Database schema revision',
    needs: ['extension.status'],
    async run(ctx) {
      const ops = ctx.facts.ops!
      if (ops.schemaState === 'current') return pass(`at ${ops.dbRevision}, the head of MLflow ${ops.mlflowVersion}`)
      if (ops.schemaState === 'behind')
        return fail(
          `${ops.pendingMigrations?.length ?? '?'} migration(s) pending: the database is at ${ops.dbRevision}, MLflow ${ops.mlflowVersion} expects ${ops.expectedHead}`,
          'Back up, then restart or redeploy the content with MLFLOWCTL_AUTO_MIGRATE=true (the default), or run mlflowctl upgrade.',
        )
      if (ops.schemaState === 'ahead-additive')
        return warn(
          `the database is at ${ops.dbRevision}, ahead of MLflow ${ops.mlflowVersion}'s head ${ops.expectedHead} by migrations that only add (an instant rollback): this MLflow runs on it, and ignores what they added`,
          'Upgrade again to the release that migrated it when ready (mlflowctl upgrade plan --to VERSION shows which).',
        )
      if (ops.schemaState === 'unknown')
        return fail(
          `the database is at ${ops.dbRevision}, which MLflow ${ops.mlflowVersion} does not know: it is ahead of the code (a newer MLflow migrated it)`,
          'Deploy the MLflow version that migrated it (mlflowctl version bump / deploy), or restore a backup taken before.',
        )
      return fail(
        `schema state ${ops.schemaState} (revision ${ops.dbRevision ?? 'none'}, expected ${ops.expectedHead})`,
        'Read the extension log; restore a backup if the tables were changed by hand.',
      )
    },
  },
  {
    id: 'extension.free-space',
    category: 'extension',
    title: 'Free space in the data directory',
    needs: ['extension.status'],
    async run(ctx) {
      const ops = ctx.facts.ops!
      if (ops.dataDirFreeBytes == null) return pass('no local data directory (external storage)')
      const free = ops.dataDirFreeBytes
      const ratio = ops.dataDirTotalBytes ? free / ops.dataDirTotalBytes : undefined
      const text = `${formatBytes(free)} free${ratio === undefined ? '' : ` (${Math.round(ratio * 100)}%)`} in ${ops.dataDir}`
      if (free < ctx.input.minFreeBytes || (ratio !== undefined && ratio < ctx.input.minFreeRatio))
        return warn(
          `${text}, under ${formatBytes(ctx.input.minFreeBytes)} or ${Math.round(ctx.input.minFreeRatio * 100)}%`,
          'Free space (prune old snapshots in mlflowctl/snapshots, old artifacts), or ask the Connect admin for more.',
        )
      return pass(text)
    },
  },
  {
    id: 'extension.backup-age',
    category: 'extension',
    title: 'Age of the last backup',
    needs: ['config.guid'],
    unless: (ctx) => (ctx.input.maxBackupAgeMs === undefined ? 'only with --max-backup-age' : undefined),
    async run(ctx) {
      const backups = (await ctx.probes.history()).filter(
        (event) => event.guid === ctx.input.guid.value && event.action === 'backup' && event.result === 'ok',
      )
      const last = backups.at(-1)
      if (!last)
        return fail(
          'no successful backup of this content is recorded on this machine',
          'Take one: mlflowctl backup create (and schedule it, templates/cron).',
        )
      const age = ctx.probes.now() - Date.parse(last.time)
      if (age > ctx.input.maxBackupAgeMs!)
        return fail(
          `the last backup is ${formatAge(age)} old (${last.time})`,
          'Check the backup schedule (cron/systemd timer) and its log.',
        )
      return pass(`the last backup is ${formatAge(age)} old`)
    },
  },
  {
    id: 'extension.replica',
    category: 'extension',
    title: 'Replication of local storage',
    needs: ['extension.status'],
    async run(ctx) {
      const replica = ctx.facts.ops!.replica
      if (!replica) return pass('off (MLFLOWCTL_REPLICA_URL is not set)')
      if (replica.role === 'refused')
        return fail(
          `replication to ${replica.url} is refused: ${replica.refusedBecause ?? 'no reason given'}`,
          'Fix what the reason names (the bundle: mlflowctl init --replica-store; the variables MLFLOWCTL_REPLICA_*), then redeploy.',
        )
      if (replica.role !== 'replicating')
        return warn(
          `replication to ${replica.url} is ${replica.role} in the process that answered`,
          replica.role === 'standby'
            ? 'Another server process holds the replica lock; local storage should run one process (max processes 1).'
            : 'It has just started; run doctor again in a minute.',
        )
      const where = `to ${replica.url}, generation ${replica.generation ?? '?'}`
      if (replica.stalledSeconds)
        return fail(
          `replication ${where} is stalled: ${replica.lastError ?? `the replica has not answered for ${replica.stalledSeconds} s`}`,
          'The replica accepts no writes (a frozen or unreachable bucket, a full disk): check it; the WAL is held until it answers, then let go past MLFLOWCTL_REPLICA_MAX_WAL.',
        )
      const lagMs = (replica.lagSeconds ?? Number.POSITIVE_INFINITY) * 1000
      if (lagMs > ctx.input.maxReplicaLagMs)
        return warn(
          `replication ${where} is ${Number.isFinite(lagMs) ? formatLag(lagMs) : 'no round yet'} behind, over ${formatLag(ctx.input.maxReplicaLagMs)}${replica.lastError ? `; last error: ${replica.lastError}` : ''}`,
          'Replication has stopped or falls behind: read the content log (replica.round_failed); check the replica is reachable and writable.',
        )
      if (replica.lastError)
        return warn(
          `replication ${where} is current, but its last round failed: ${replica.lastError}`,
          'Read the content log (replica.round_failed); it retries every round.',
        )
      // A notice of the last day: a restore cannot reach back past what it names.
      if (replica.lastNotice && ctx.probes.now() - (replica.lastNoticeAt ?? 0) * 1000 < 86_400_000)
        return warn(
          `replicating ${where}, ${formatLag(lagMs)} behind; note: ${replica.lastNotice}`,
          'Restores reach back to the start of the new generation only; check what deleted the replica (a lifecycle rule, a person).',
        )
      return pass(`replicating ${where}, ${formatLag(lagMs)} behind`)
    },
  },
  {
    id: 'extension.gc',
    category: 'extension',
    title: 'Retention and the last gc',
    needs: ['extension.status'],
    async run(ctx) {
      const gc = ctx.facts.ops!.gc
      if (!gc) return pass('not reported by this extension (redeploy with this mlflowctl to see gc and retention)')
      if (gc.retention?.invalid)
        return fail(
          `MLFLOWCTL_RETENTION is refused: ${gc.retention.invalid}`,
          'Set it as KEY=DURATION pairs, e.g. deleted=30d,traces=90d (keys: deleted, traces, orphans, every), then redeploy.',
        )
      const policy = gc.retention ? `retention ${gc.retention.policy}` : 'no retention policy'
      const last = gc.last
        ? `last ${gc.last.trigger} ${gc.last.ok ? 'ok' : 'failed'} at ${gc.last.finishedAt}${gc.last.bytesFreed ? `, freed ${formatBytes(gc.last.bytesFreed)}` : ''}`
        : 'no gc yet'
      const pending = gc.pending ? `${gc.pending.runs} deleted runs and ${gc.pending.experiments} experiments wait` : ''
      const summary = [policy, last, pending].filter(Boolean).join('; ')
      if (gc.last && !gc.last.ok)
        return warn(
          `${summary}: ${gc.last.error ?? 'no reason given'}`,
          'Run mlflowctl gc --guid GUID (a dry run) to see what is left, then with --yes; the content log has retention.failed.',
        )
      if (!gc.retention && (gc.pending?.runs ?? 0) + (gc.pending?.experiments ?? 0) > 0)
        return warn(
          summary,
          'Deleted runs keep their rows and files until purged: run mlflowctl gc, or set MLFLOWCTL_RETENTION=deleted=30d (deploy --retention).',
        )
      return pass(summary)
    },
  },
]
