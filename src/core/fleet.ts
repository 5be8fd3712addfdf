// Many deployments at once: which content on a Connect server is an mlflowctl deployment, what each one is, and the
// outcome of running one single-deployment command on each. Pure: discovery and the commands are ports.
import {ConfigError, ExitCode} from '../errors.js'
import {FLEET_TAG} from './deploy.js'
import type {HistoryEvent} from './history.js'

/** Content as GET v1/content lists it (with include=tags,owner). */
export interface FleetListing {
  guid: string
  name?: string | null
  title?: string | null
  app_mode?: string | null
  app_role?: string | null
  bundle_id?: string | null
  tags?: Array<{name: string}> | null
  owner?: {username?: string | null} | null
}

/** mlflowctl.json of a deployment's active bundle (the fields fleet reads). */
export interface FleetBundleInfo {
  mlflowVersion?: string
  storage?: string
  extensionVersion?: string
}

/** The ops status fields fleet reads. */
export interface FleetStatus {
  mlflowVersion?: string
  storageMode?: string
  schemaState?: string
  dbRevision?: string | null
  expectedHead?: string | null
  replica?: {lagSeconds?: number | null; lastError?: string | null} | null
  /** The last snapshot a backup took whole through the ops endpoint (from any machine). */
  lastSnapshot?: {at?: string | null} | null
}

export interface FleetDiscoveryPorts {
  listContent(): Promise<FleetListing[]>
  /** mlflowctl.json of the active bundle; undefined when the bundle has none; throws when it cannot be read. */
  bundleInfo(guid: string, bundleId: string): Promise<FleetBundleInfo | undefined>
}

export interface FleetMember {
  guid: string
  name: string
  owner?: string
  /** What the key may do: manage (owner, collaborator, administrator) or view only. */
  access: 'manage' | 'view'
  /** unverified: a managed Python API whose bundle could not be read (`problem` says why). */
  recognisedBy: 'bundle' | 'tag' | 'unverified'
  bundle?: FleetBundleInfo
  problem?: string
}

/** Content Connect runs as a Python API: the only app modes the extension is deployed as. */
const EXTENSION_APP_MODES = new Set(['python-api', 'python-fastapi'])

/**
 * The mlflowctl deployments among what the key may see: an active bundle holding mlflowctl.json (readable with
 * manage rights; an administrator manages everything, whatever `app_role` says) or the `mlflowctl` tag that deploy
 * sets (readable by viewers too). A managed Python API whose bundle cannot be read is kept as unverified, with the
 * reason, rather than dropped: a failed download must not make a deployment vanish from a backup run. A --guid that
 * is not on the server, or is not a Python API, is an error. Bounded: at most `jobs` bundles are read at once.
 */
export async function discoverFleet(
  ports: FleetDiscoveryPorts,
  options: {jobs: number; guids?: string[]; administrator?: boolean},
): Promise<FleetMember[]> {
  const all = await ports.listContent()
  for (const guid of options.guids ?? []) {
    const item = all.find((candidate) => candidate.guid === guid)
    if (!item)
      throw new ConfigError('CONTENT_NOT_FOUND', `Connect shows this key no content with GUID ${guid}.`, {
        suggestions: ['Check --guid, or use a key that may see the content.'],
      })
    if (!EXTENSION_APP_MODES.has(item.app_mode ?? ''))
      throw new ConfigError(
        'NOT_AN_MLFLOWCTL_BUNDLE',
        `${guid} is ${item.app_mode ?? 'not deployed'}, not an MLflow extension.`,
      )
  }
  const listing = all.filter(
    (item) =>
      EXTENSION_APP_MODES.has(item.app_mode ?? '') && (!options.guids?.length || options.guids.includes(item.guid)),
  )
  const members = await mapBounded(listing, options.jobs, async (item): Promise<FleetMember | undefined> => {
    const tagged = (item.tags ?? []).some((tag) => tag.name === FLEET_TAG)
    const manages = options.administrator || item.app_role === 'owner' || item.app_role === 'editor'
    const base = {
      guid: item.guid,
      name: item.title || item.name || item.guid,
      owner: item.owner?.username ?? undefined,
    }
    if (manages && item.bundle_id) {
      const read = await ports.bundleInfo(item.guid, item.bundle_id).then(
        (bundle) => ({bundle}),
        (error: Error) => ({problem: `its bundle could not be read: ${error.message}`}),
      )
      if ('bundle' in read) {
        if (read.bundle) return {...base, access: 'manage', recognisedBy: 'bundle', bundle: read.bundle}
        return tagged ? {...base, access: 'manage', recognisedBy: 'tag'} : undefined
      }
      if (tagged) return {...base, access: 'manage', recognisedBy: 'tag'}
      return {...base, access: 'manage', recognisedBy: 'unverified', problem: read.problem}
    }
    return tagged ? {...base, access: manages ? 'manage' : 'view', recognisedBy: 'tag'} : undefined
  })
  return members.filter((member): member is FleetMember => member !== undefined)
}

/** Runs `work` on every item, at most `jobs` at once, keeping the input order in the result. */
export async function mapBounded<T, R>(items: T[], jobs: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index])
    }
  }
  await Promise.all(Array.from({length: Math.min(Math.max(1, jobs), items.length)}, worker))
  return results
}

/**
 * Severity of exit codes, mildest first: the fleet exits with the worst of its members'. A refused key or a broken
 * configuration outranks a failed check, since it hides what the checks would have found.
 */
const SEVERITY: readonly number[] = [
  ExitCode.Ok,
  ExitCode.CheckFailed,
  ExitCode.External,
  ExitCode.Config,
  ExitCode.Auth,
  ExitCode.Usage,
  ExitCode.Internal,
  ExitCode.Cancelled,
]

export function worstExitCode(codes: number[]): number {
  const rank = (code: number) =>
    SEVERITY.includes(code) ? SEVERITY.indexOf(code) : SEVERITY.indexOf(ExitCode.Internal)
  return codes.reduce((worst, code) => (rank(code) > rank(worst) ? code : worst), ExitCode.Ok as number)
}

/** One member's outcome of a single-deployment command. */
export interface FleetOutcome {
  guid: string
  name: string
  exitCode: number
  /** Why the command did not run on this member (the key may only view it); it counts as exit 0. */
  skipped?: string
  /** The error code, message and fix hints of a non-zero outcome (from the command's JSON envelope). */
  error?: {code: string; message: string; suggestions?: string[]}
  /** The command's result (its --json `result`), when it gave one. */
  result?: unknown
  seconds: number
}

export interface FleetSummary {
  exitCode: number
  outcomes: FleetOutcome[]
  failed: string[]
  skipped: string[]
}

/**
 * A member's outcome without running anything: skipped when the key may only view it (a publisher who can see
 * another team's deployment must not fail every run on it), failed when its bundle could not be read.
 */
export function outcomeWithoutRunning(member: FleetMember): FleetOutcome | undefined {
  if (member.access === 'view')
    return {
      guid: member.guid,
      name: member.name,
      exitCode: ExitCode.Ok,
      skipped: 'the key may only view it',
      seconds: 0,
    }
  if (member.problem)
    return {
      guid: member.guid,
      name: member.name,
      exitCode: ExitCode.External,
      error: {code: 'FLEET_MEMBER_UNREADABLE', message: member.problem},
      seconds: 0,
    }
  return undefined
}

export function summariseFleet(outcomes: FleetOutcome[]): FleetSummary {
  return {
    exitCode: worstExitCode(outcomes.map((outcome) => outcome.exitCode)),
    outcomes,
    failed: outcomes.filter((outcome) => outcome.exitCode !== ExitCode.Ok).map((outcome) => outcome.guid),
    skipped: outcomes.filter((outcome) => outcome.skipped).map((outcome) => outcome.guid),
  }
}

/** The repository of one member in a fleet backup: one sub-path per GUID, in a directory or an object store. */
export function memberRepository(repo: string, guid: string): string {
  return `${repo.replace(/\/+$/, '')}/${guid}`
}

/** What `fleet list` shows of one member. */
export interface FleetRow {
  guid: string
  name: string
  owner?: string
  access: FleetMember['access']
  recognisedBy: FleetMember['recognisedBy']
  mlflowVersion?: string
  storage?: string
  schema: string
  lastBackup?: string
  replicaLagSeconds?: number
  /** Why the ops status could not be read, when it could not. */
  statusError?: string
  doctor?: {exitCode: number; failed: string[]}
}

/** Combines what was found about one member into its row. */
export function fleetRow(
  member: FleetMember,
  facts: {status?: FleetStatus; statusError?: string; history: HistoryEvent[]; doctor?: FleetRow['doctor']},
): FleetRow {
  const {status} = facts
  // This machine's ledger, or the extension's own record of the last snapshot a backup took (from anywhere).
  const lastBackup = [
    ...facts.history
      .filter((event) => event.guid === member.guid && event.action === 'backup' && event.result === 'ok')
      .map((event) => event.time),
    ...(status?.lastSnapshot?.at ? [new Date(status.lastSnapshot.at).toISOString()] : []),
  ]
    .sort()
    .at(-1)
  return {
    guid: member.guid,
    name: member.name,
    owner: member.owner,
    access: member.access,
    recognisedBy: member.recognisedBy,
    mlflowVersion: status?.mlflowVersion ?? member.bundle?.mlflowVersion,
    storage: status?.storageMode ?? member.bundle?.storage,
    schema: status ? schemaLabel(status) : schemaFromStatusError(facts.statusError ?? ''),
    lastBackup,
    replicaLagSeconds: status?.replica?.lagSeconds ?? undefined,
    statusError: facts.statusError ?? member.problem,
    doctor: facts.doctor,
  }
}

/** What an ops status that could not be read says of the schema: a start refused because the database is behind
 * (automatic migration off) names the two revisions; anything else is unknown. */
export function schemaFromStatusError(message: string): string {
  const behind = /schema revision (\w+) and MLflow [\w.]+ expects (\w+)/.exec(message)
  if (behind) return `behind (${behind[1]} → ${behind[2]}), start refused`
  return 'unknown'
}

function schemaLabel(status: FleetStatus): string {
  if (status.schemaState === 'current') return 'current'
  if (status.schemaState === 'behind') return `behind (${status.dbRevision ?? 'empty'} → ${status.expectedHead ?? '?'})`
  return status.schemaState ?? 'unknown'
}
