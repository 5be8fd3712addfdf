/** Connect's calendar versions (2025.06.0). Pure. */

/**
 * Parses YEAR.MONTH.PATCH. Connect writes its months with a leading zero (2025.06.0), which semver.coerce
 * rejects, so the parts are compared as numbers. Undefined when the text is not such a version.
 */
export function parseConnectVersion(text: string | undefined): [number, number, number] | undefined {
  const match = /^(\d{4})\.(\d{1,2})\.(\d+)/.exec((text ?? '').trim())
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : undefined
}

/** a >= b for two parsed versions. */
export function connectVersionAtLeast(
  version: [number, number, number],
  floor: readonly [number, number, number],
): boolean {
  for (let i = 0; i < 3; i++) if (version[i] !== floor[i]) return version[i] > floor[i]
  return true
}
