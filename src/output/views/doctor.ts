import type {DoctorResult} from '../../core/doctor/index.js'
import {CATEGORIES, type CheckStatus} from '../../core/doctor/runner.js'
import type {Painter} from '../color.js'

const MARKS: Record<CheckStatus, string> = {pass: '✓', warn: '!', fail: '✗', skip: '-'}
const TITLES: Record<string, string> = {
  config: 'Config',
  connect: 'Connect',
  dev: 'Dev instance',
  mlflow: 'MLflow',
  extension: 'Extension',
  database: 'Database and artifact store',
  client: 'Local client',
}

/** Categories with marks, the fix under every warning and failure, timings with -v, one summary line. */
export function showDoctor(result: DoctorResult, paint: Painter, verbose: boolean): string {
  const color: Record<CheckStatus, (text: string) => string> = {
    pass: paint.ok,
    warn: paint.warn,
    fail: paint.fail,
    skip: paint.dim,
  }
  const lines: string[] = []
  for (const category of CATEGORIES) {
    const checks = result.checks.filter((check) => check.category === category)
    if (checks.length === 0) continue
    lines.push(paint.bold(TITLES[category]))
    for (const check of checks) {
      const timing = verbose && check.status !== 'skip' ? paint.dim(` (${check.durationMs} ms)`) : ''
      lines.push(
        `  ${color[check.status](MARKS[check.status])} ${check.title}: ${check.detail}${timing}  ${paint.dim(`[${check.id}]`)}`,
      )
      if (check.fix && (check.status === 'warn' || check.status === 'fail')) lines.push(`      → ${check.fix}`)
    }
  }
  const {pass, warn, fail, skip} = result.summary
  lines.push(
    '',
    `${pass} passed, ${warn} warnings, ${fail} failed, ${skip} skipped (${(result.durationMs / 1000).toFixed(1)} s)`,
  )
  return lines.join('\n')
}
