/**
 * Runs diagnostic checks concurrently, each under its own timeout, in dependency order: a check starts
 * when the checks it needs have finished, and is skipped (with the reason) when one of them did not pass.
 * A dead host therefore costs at most one timeout per chain, never the sum of all checks. Pure apart
 * from the timers; the checks get their I/O through the context.
 */

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip'
export const CATEGORIES = ['config', 'connect', 'dev', 'mlflow', 'extension', 'database', 'client'] as const
export type CheckCategory = (typeof CATEGORIES)[number]

export interface CheckOutcome {
  status: CheckStatus
  detail: string
  /** What to do about it; required for warn and fail. */
  fix?: string
  /** For a failure that means "configuration missing" (3) or "authentication refused" (4) rather than 6. */
  exit?: 3 | 4
}

export interface CheckResult extends CheckOutcome {
  id: string
  category: CheckCategory
  title: string
  durationMs: number
}

export type Results = ReadonlyMap<string, CheckResult>

export interface CheckDefinition<C> {
  id: string
  category: CheckCategory
  title: string
  /** Checks that must pass (or warn) first; their results are passed to run(). */
  needs?: string[]
  /** Why the check cannot run with this input (for example no --db URL): reported as skip. */
  unless?: (ctx: C) => string | undefined
  run(ctx: C, results: Results): Promise<CheckOutcome>
}

export interface RunOptions {
  /** Only these checks (and what they need). */
  only?: string[]
  skip?: string[]
  timeoutMs: number
  now?: () => number
}

/** The checks to run: --only plus everything they need, minus --skip. @throws Error naming unknown IDs */
export function selectChecks<C>(
  all: CheckDefinition<C>[],
  options: Pick<RunOptions, 'only' | 'skip'>,
): CheckDefinition<C>[] {
  const byId = new Map(all.map((check) => [check.id, check]))
  const unknown = [...(options.only ?? []), ...(options.skip ?? [])].filter(
    (id) => !byId.has(id) && !all.some((check) => check.category === id),
  )
  if (unknown.length > 0) throw new Error(`Unknown check ID${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}.`)
  const matches = (check: CheckDefinition<C>, ids: string[]) => ids.includes(check.id) || ids.includes(check.category)
  let selected = options.only?.length ? all.filter((check) => matches(check, options.only!)) : [...all]
  const wanted = new Set(selected.map((check) => check.id))
  for (let i = 0; i < selected.length; i++) {
    for (const need of selected[i].needs ?? []) {
      if (!wanted.has(need) && byId.has(need)) {
        wanted.add(need)
        selected.push(byId.get(need)!)
      }
    }
  }
  selected = all.filter((check) => wanted.has(check.id))
  return options.skip?.length ? selected.filter((check) => !matches(check, options.skip!)) : selected
}

export async function runChecks<C>(checks: CheckDefinition<C>[], ctx: C, options: RunOptions): Promise<CheckResult[]> {
  const now = options.now ?? Date.now
  const present = new Set(checks.map((check) => check.id))
  const results = new Map<string, CheckResult>()
  const running = new Map<string, Promise<CheckResult>>()
  const start = (check: CheckDefinition<C>): Promise<CheckResult> => {
    const existing = running.get(check.id)
    if (existing) return existing
    const promise = (async () => {
      const needs = (check.needs ?? []).filter((id) => present.has(id))
      const missing = (check.needs ?? []).filter((id) => !present.has(id))
      const done = await Promise.all(needs.map((id) => start(checks.find((c) => c.id === id)!)))
      const base = {id: check.id, category: check.category, title: check.title}
      const blocked = done.find((result) => result.status === 'fail' || result.status === 'skip')
      const result: CheckResult = blocked
        ? // A skip passes its reason on, so every dependent names the root cause ("TCP failed (connect.tcp)").
          {
            ...base,
            status: 'skip',
            detail: blocked.status === 'fail' ? `${blocked.title} failed (${blocked.id})` : blocked.detail,
            durationMs: 0,
          }
        : missing.length > 0
          ? {
              ...base,
              status: 'skip',
              detail: `needs ${missing.join(', ')}, which ${missing.length > 1 ? 'were' : 'was'} not run (--skip)`,
              durationMs: 0,
            }
          : await runOne(check, ctx, results, options.timeoutMs, now)
      results.set(check.id, result)
      return result
    })()
    running.set(check.id, promise)
    return promise
  }
  return Promise.all(checks.map(start))
}

async function runOne<C>(
  check: CheckDefinition<C>,
  ctx: C,
  results: Results,
  timeoutMs: number,
  now: () => number,
): Promise<CheckResult> {
  const base = {id: check.id, category: check.category, title: check.title}
  const reason = check.unless?.(ctx)
  if (reason) return {...base, status: 'skip', detail: reason, durationMs: 0}
  const started = now()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          status: 'fail',
          detail: `no answer within ${Math.round(timeoutMs / 100) / 10} s`,
          fix: 'Check that the host is reachable from here (VPN, firewall, proxy), or raise --timeout.',
        }),
      timeoutMs,
    )
  })
  let outcome: CheckOutcome
  try {
    outcome = await Promise.race([check.run(ctx, results), timeout])
  } catch (error) {
    outcome = {
      status: 'fail',
      detail: `the check itself failed: ${(error as Error).message}`,
      fix: 'This is a bug in mlflowctl doctor; report it with the output of -v.',
    }
  } finally {
    clearTimeout(timer)
  }
  return {...base, ...outcome, durationMs: Math.max(0, now() - started)}
}

export interface DoctorSummary {
  pass: number
  warn: number
  fail: number
  skip: number
}

export function summarize(results: CheckResult[]): DoctorSummary {
  const summary: DoctorSummary = {pass: 0, warn: 0, fail: 0, skip: 0}
  for (const result of results) summary[result.status]++
  return summary
}
