/** Human-friendly durations and sizes for flags (`26h`, `7d`, `1GiB`). Pure. */
import {UsageError} from '../errors.js'

const DURATION_UNITS: Record<string, number> = {s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/** @throws UsageError INVALID_DURATION */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(text.trim())
  if (!match)
    throw new UsageError(
      'INVALID_DURATION',
      `${flag} must be a number with a unit (s, m, h, d, w), e.g. 26h or 7d; got "${text}".`,
    )
  return Number(match[1]) * DURATION_UNITS[match[2].toLowerCase()]
}

/** @throws UsageError INVALID_SIZE */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?$/i.exec(text.trim())
  if (!match)
    throw new UsageError('INVALID_SIZE', `${flag} must be a size such as 1GiB, 500MB or 1073741824; got "${text}".`)
  return Math.round(Number(match[1]) * SIZE_UNITS[(match[2] ?? '').toLowerCase()])
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`
}
