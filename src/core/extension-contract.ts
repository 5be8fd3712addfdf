import {z} from 'zod'

import {CheckFailedError, ExternalError} from '../errors.js'

/**
 * The one typed contract with the extension's ops endpoint (templates/extension/mlflowctl_extension: server.py
 * `describe()` for /_mlflowctl/status, transfer.py `restore_upload` for /_mlflowctl/restore). It lives in core
 * because core use cases (doctor, verify, dev) read the status as well as the adapters that fetch it. Fields that
 * older extensions do not send are optional; unknown fields pass through here, and the contract test (integration
 * dev-mlflow, cloud-aws) parses the real extension's answer with `.strict()`, so a field added on one side only fails.
 */
export const STATUS_FORMAT_VERSION = 1

/**
 * How the extension's start went or is going (startup.py `Startup.view`): /health answers it with 503 until the
 * start-up steps are done, the ops status carries it afterwards.
 */
export const startupSchema = z
  .object({
    state: z.enum(['starting', 'migrating', 'ready', 'refused']),
    since: z.string(),
    migration: z
      .object({
        from: z.string().nullable(),
        to: z.string(),
        startedAt: z.string(),
        step: z.number().int(),
        of: z.number().int(),
        revision: z.string(),
        title: z.string().nullable(),
        finishedAt: z.string().optional(),
      })
      .strict()
      .nullable(),
    error: z.object({code: z.string(), message: z.string()}).strict().nullable(),
  })
  .strict()

export type StartupView = z.infer<typeof startupSchema>

/** The startup view in a /health answer, when the extension sent one (an older one, or MLflow itself, does not). */
export function startupFromHealth(body: string): StartupView | undefined {
  try {
    const parsed = startupSchema.safeParse(
      Object.fromEntries(Object.entries(JSON.parse(body) as Record<string, unknown>).filter(([k]) => k !== 'status')),
    )
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/** What the extension does, as a verb phrase after "the extension": "is migrating its database schema from … to
 * …, step 3 of 7 (…)", "refused to start (CODE): …", "is starting (since …)". */
export function describeStartup(view: StartupView): string {
  if (view.state === 'refused' && view.error) return `refused to start (${view.error.code}): ${view.error.message}`
  if (view.state === 'migrating' && view.migration)
    return `is migrating its database schema from ${view.migration.from ?? 'nothing'} to ${view.migration.to}, step ${view.migration.step} of ${view.migration.of} (${view.migration.revision}${view.migration.title ? `: ${view.migration.title}` : ''}) since ${view.migration.startedAt}`
  return `is starting (since ${view.since})`
}

/** The last gc or retention pass (storage_service.py `_record`). */
export const gcRecordSchema = z
  .object({
    trigger: z.enum(['gc', 'retention']),
    startedAt: z.string(),
    finishedAt: z.string(),
    ok: z.boolean(),
    error: z.string().nullable(),
    deleted: z.record(z.object({count: z.number().int(), files: z.number().int()}).strict()).nullable(),
    bytesFreed: z.number().nullable(),
  })
  .strict()

/** MLFLOWCTL_RETENTION, the last pass and what waits for one (storage_service.py `StorageService.status`). */
export const gcStatusSchema = z
  .object({
    retention: z
      .object({policy: z.string(), invalid: z.string().nullable(), everySeconds: z.number()})
      .strict()
      .nullable(),
    last: gcRecordSchema.nullable(),
    pending: z.object({runs: z.number().int(), experiments: z.number().int()}).strict().nullable(),
  })
  .strict()

export type GcStatus = z.infer<typeof gcStatusSchema>

const tally = z.object({count: z.number().int(), bytes: z.number()}).strict()
const unitSchema = z
  .object({path: z.string(), bytes: z.number(), files: z.number().int(), modifiedMs: z.number()})
  .strict()

/** GET /_mlflowctl/storage, and `storage_tool.py report` for a self-hosted store (storage_report.py). */
export const storageReportSchema = z
  .object({
    reportVersion: z.literal(1),
    generatedAt: z.string(),
    database: z
      .object({
        dialect: z.string(),
        bytes: z.number().nullable(),
        largestTables: z.array(
          z.object({name: z.string(), rows: z.number().nullable(), bytes: z.number().nullable()}).strict(),
        ),
      })
      .strict(),
    artifacts: z
      .object({
        destination: z.string(),
        bytes: z.number(),
        files: z.number().int(),
        byExperiment: z.array(
          z
            .object({
              experimentId: z.string(),
              name: z.string().nullable(),
              lifecycleStage: z.string().nullable(),
              bytes: z.number(),
              files: z.number().int(),
            })
            .strict(),
        ),
      })
      .strict(),
    traces: z.object({count: z.number().int(), bytes: z.number(), oldestMs: z.number().nullable()}).strict(),
    deleted: z
      .object({
        experiments: tally,
        runs: tally,
        loggedModels: tally,
        modelVersions: tally,
        oldestDeletedRunMs: z.number().nullable(),
      })
      .strict(),
    orphans: z
      .object({
        count: z.number().int(),
        bytes: z.number(),
        pastGrace: z.number().int(),
        graceSeconds: z.number(),
        listed: z.array(unitSchema),
        /** Files no row refers to outside MLflow's own layout: reported, never deleted. */
        unrecognised: z.object({count: z.number().int(), bytes: z.number(), listed: z.array(unitSchema)}).strict(),
      })
      .strict(),
    /** Which numbers are estimates ("database.tables.rows", "traces.count"). */
    estimated: z.array(z.string()),
    /** The deployment's retention and last pass; absent for a self-hosted store. */
    gc: gcStatusSchema.optional(),
  })
  .strict()

export type StorageReport = z.infer<typeof storageReportSchema>

export const GC_KINDS = ['runs', 'loggedModels', 'traces', 'experiments', 'modelVersionFiles', 'orphans'] as const
export type GcKind = (typeof GC_KINDS)[number]
const perKind = <T extends z.ZodTypeAny>(value: T) =>
  z.object(Object.fromEntries(GC_KINDS.map((kind) => [kind, value])) as Record<GcKind, T>).strict()
const planned = z.object({count: z.number().int(), bytes: z.number(), files: z.number().int()}).strict()

/** One line of POST /_mlflowctl/gc's answer, or of `storage_tool.py gc` (storage_gc.py `run_gc`). */
export const gcEventSchema = z.discriminatedUnion('event', [
  z
    .object({event: z.literal('plan'), dryRun: z.boolean(), kinds: perKind(planned), kept: z.array(z.string())})
    .strict(),
  z
    .object({event: z.literal('progress'), kind: z.enum(GC_KINDS), done: z.number().int(), of: z.number().int()})
    .strict(),
  z
    .object({
      event: z.literal('result'),
      dryRun: z.boolean(),
      kinds: perKind(planned),
      deleted: perKind(z.object({count: z.number().int(), files: z.number().int()}).strict()),
      bytesFreed: z.number(),
      kept: z.number().int(),
      seconds: z.number(),
      /** The longest single transaction: how long gc held the database's write lock at most. */
      longestTransactionSeconds: z.number(),
    })
    .strict(),
  z.object({event: z.literal('error'), message: z.string()}).strict(),
])

export type GcEvent = z.infer<typeof gcEventSchema>
export type GcResultEvent = Extract<GcEvent, {event: 'result'}>

/** @throws EXTENSION_ANSWER_INVALID */
export const parseStorageReport = (body: unknown, what = 'The storage report'): StorageReport =>
  parsed(storageReportSchema, body, what)

/** @throws EXTENSION_ANSWER_INVALID */
export const parseGcEvent = (line: string, what = 'A gc progress line'): GcEvent => parsed(gcEventSchema, line, what)

export const opsStatusSchema = z
  .object({
    statusVersion: z.number().int().optional(),
    extensionVersion: z.string().optional(),
    mlflowVersion: z.string().optional(),
    bundleMlflowVersion: z.string().nullish(),
    appMode: z.string().nullish(),
    storageMode: z.string().optional(),
    dbDialect: z.string().optional(),
    pythonVersion: z.string().optional(),
    sqliteVersion: z.string().optional(),
    tables: z.array(z.string()).optional(),
    rowEstimates: z.record(z.number()).optional(),
    dbRevision: z.string().nullish(),
    expectedHead: z.string().optional(),
    schemaState: z.string().optional(),
    pendingMigrations: z.array(z.string()).optional(),
    backendStore: z.string().optional(),
    dataDir: z.string().nullish(),
    dataDirFreeBytes: z.number().nullish(),
    dataDirTotalBytes: z.number().nullish(),
    /** The SQLite file with its WAL, or PostgreSQL's pg_database_size; null elsewhere. Optional for older extensions. */
    databaseBytes: z.number().nullish(),
    /** Local storage's artifact tree (recomputed every 5 minutes); null for an object store. */
    artifactBytes: z.number().nullish(),
    /** The last snapshot a backup took whole through POST /_mlflowctl/snapshot (local storage). */
    lastSnapshot: z.object({at: z.string(), files: z.number().int(), bytes: z.number()}).strict().nullish(),
    hasData: z.boolean().nullish(),
    startedAt: z.string().optional(),
    /** How the start went (the migration it ran, if any); optional for older extensions. */
    startup: startupSchema.nullish(),
    now: z.string().optional(),
    credentialsSource: z.string().nullish(),
    credentials: z
      .array(z.object({name: z.string(), expiresAt: z.string().nullable(), renewals: z.number().int()}).strict())
      .optional(),
    /** MLFLOWCTL_REPLICA_URL (replica_service.py `ReplicationService.status`); null when replication is off. */
    replica: z
      .object({
        url: z.string(),
        role: z.enum(['starting', 'standby', 'replicating', 'refused']),
        generation: z.string().nullable(),
        walIndex: z.number().int().nullable(),
        offset: z.number().int().nullable(),
        lastShippedAt: z.number().nullable(),
        lastRoundAt: z.number().nullable(),
        shippedFrames: z.number().int(),
        lagSeconds: z.number().nullable(),
        lastError: z.string().nullable(),
        refusedBecause: z.string().nullable(),
        // Since the replica learned to resume, checkpoint, snapshot and ship artifacts; optional for older extensions.
        resumed: z.boolean().nullable().optional(),
        snapshotTakenAt: z.number().nullable().optional(),
        checkpoints: z.number().int().optional(),
        artifactsShipped: z.number().int().optional(),
        retentionSeconds: z.number().optional(),
        snapshotIntervalSeconds: z.number().optional(),
        /** Object stores: connect (the content's OAuth integration) or ambient (the SDK's chain). */
        credentials: z.enum(['connect', 'ambient']).nullable().optional(),
        // Since snapshots, maintenance and artifacts run beside WAL shipping; optional for older extensions.
        /** When the snapshot being taken began (Unix seconds), null when none is. */
        snapshotStartedAt: z.number().nullable().optional(),
        /** The WAL file's size now. */
        walBytes: z.number().int().nullable().optional(),
        /** Artifacts uploaded through the proxy and not shipped yet. */
        artifactsPending: z.number().int().optional(),
        /** The last thing an operator should know (a generation that vanished, a WAL let go during an outage). */
        lastNotice: z.string().nullable().optional(),
        lastNoticeAt: z.number().nullable().optional(),
        /** How long the round in progress has waited on the replica, once that is past the stall threshold. */
        stalledSeconds: z.number().nullable().optional(),
      })
      .strict()
      .nullish(),
    /** MLFLOWCTL_RETENTION, the last gc or retention pass, what is deleted and not purged; optional for older extensions. */
    gc: gcStatusSchema.nullish(),
  })
  .passthrough()

export type OpsStatus = z.infer<typeof opsStatusSchema>

export const restoreResultSchema = z
  .object({
    restored: z.boolean().optional(),
    revision: z.string(),
    artifactFiles: z.number().int(),
    held: z.boolean().optional(),
  })
  .passthrough()

export type RestoreResult = z.infer<typeof restoreResultSchema>

function parsed<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  let value = body
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body)
    } catch {
      throw new ExternalError('EXTENSION_ANSWER_INVALID', `${what} is not JSON: ${body.slice(0, 120)}`)
    }
  }
  const result = schema.safeParse(value)
  if (!result.success) {
    const issues = result.error.issues
      .slice(0, 3)
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
    throw new ExternalError(
      'EXTENSION_ANSWER_INVALID',
      `${what} does not have the shape this mlflowctl reads (${issues.join('; ')}).`,
      {suggestions: ['Redeploy the extension with this mlflowctl (mlflowctl upgrade apply or deploy).']},
    )
  }
  return result.data
}

/**
 * The ops status, checked: its format version must be one this mlflowctl reads.
 * @throws EXTENSION_ANSWER_INVALID (not JSON, or a field of the wrong type), EXTENSION_TOO_NEW
 */
export function parseOpsStatus(body: unknown, what = "The extension's ops status"): OpsStatus {
  const status = parsed(opsStatusSchema, body, what)
  if ((status.statusVersion ?? 1) > STATUS_FORMAT_VERSION) {
    throw new CheckFailedError(
      'EXTENSION_TOO_NEW',
      `${what} has format ${status.statusVersion}; this mlflowctl reads format ${STATUS_FORMAT_VERSION}.`,
      {suggestions: ['Upgrade mlflowctl to the release that rendered the deployed extension.']},
    )
  }
  return status
}

/** The answer of POST /_mlflowctl/restore. @throws EXTENSION_ANSWER_INVALID */
export const parseRestoreResult = (body: unknown, what = "The extension's restore answer"): RestoreResult =>
  parsed(restoreResultSchema, body, what)
