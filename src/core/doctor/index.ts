/** `mlflowctl doctor`: runs the layered checks and decides the exit code. Options in, typed result out. */
import {UsageError} from '../../errors.js'
import {DOCTOR_CHECKS, doctorExitCode, type DoctorInput, type DoctorProbes} from './checks.js'
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
  let checks
  try {
    checks = selectChecks(DOCTOR_CHECKS, options)
  } catch (error) {
    throw new UsageError('UNKNOWN_CHECK', (error as Error).message, {
      suggestions: [
        `Check IDs: ${DOCTOR_CHECKS.map((check) => check.id).join(', ')} (or a category: config, connect, mlflow, extension, database, client).`,
      ],
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
