/** `mlflowctl doctor`: runs the layered checks and decides the exit code. Options in, typed result out. */
import {UsageError} from '../../errors.js'
import {DEV_DOCTOR_CHECKS, DOCTOR_CHECKS, doctorExitCode, type DoctorInput, type DoctorProbes} from './checks.js'
import {runChecks, selectChecks, summarize, type CheckResult, type DoctorSummary} from './runner.js'

export interface DoctorOptions {
  only?: string[]
  skip?: string[]
  /** Per check. */
  timeoutMs: number
}

export interface DoctorResult {
  checks: CheckResult[]
  summary: DoctorSummary
  exitCode: 0 | 3 | 4 | 6
  durationMs: number
}

/** @throws UsageError UNKNOWN_CHECK for an --only/--skip ID that does not exist */
export async function runDoctor(
  probes: DoctorProbes,
  input: DoctorInput,
  options: DoctorOptions,
): Promise<DoctorResult> {
  const all = input.dev ? DEV_DOCTOR_CHECKS : DOCTOR_CHECKS
  let checks
  try {
    checks = selectChecks(all, options)
  } catch (error) {
    const categories = [...new Set(all.map((check) => check.category))].join(', ')
    throw new UsageError('UNKNOWN_CHECK', (error as Error).message, {
      suggestions: [`Check IDs: ${all.map((check) => check.id).join(', ')} (or a category: ${categories}).`],
    })
  }
  const started = probes.now()
  const results = await runChecks(
    checks,
    {input, probes, facts: {}},
    {timeoutMs: options.timeoutMs, now: () => probes.now()},
  )
  return {
    checks: results,
    summary: summarize(results),
    exitCode: doctorExitCode(results),
    durationMs: probes.now() - started,
  }
}
