/** Masks secrets in any text that could reach output, errors or logs. Pure. */

export const MASK = '***'

// scheme://user:password@host -> scheme://user:***@host
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):([^\s@/]+)@/gi
// ?token=...&password=... (and similar) in query strings
const SECRET_QUERY =
  /([?&](?:password|passwd|pwd|token|access_token|api_key|apikey|key|secret|sig|signature|x-amz-signature|x-amz-security-token)=)[^&\s#]+/gi
// Authorization header values: "Key abc", "Bearer abc", "Basic abc"
const AUTH_HEADER = /\b(Key|Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g

/**
 * Returns `text` with URL passwords, secret query parameters, credentials in Authorization-style
 * strings and every value in `secrets` (at least 4 characters long) replaced by `***`.
 */
export function redact(text: string, secrets: Iterable<string | undefined> = []): string {
  let out = text
    .replace(URL_PASSWORD, `$1:${MASK}@`)
    .replace(SECRET_QUERY, `$1${MASK}`)
    .replace(AUTH_HEADER, `$1 ${MASK}`)
  const values = [...secrets].filter((value): value is string => typeof value === 'string' && value.length >= 4)
  // Longest first, so that a secret containing another is masked whole.
  for (const value of values.sort((a, b) => b.length - a.length)) out = out.split(value).join(MASK)
  return out
}

/** Masks every string inside a JSON-like value (keys are kept). */
export function redactDeep<T>(value: T, secrets: Iterable<string | undefined> = []): T {
  const list = [...secrets]
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') return redact(node, list)
    if (Array.isArray(node)) return node.map(walk)
    if (node && typeof node === 'object') {
      return Object.fromEntries(
        Object.entries(node as Record<string, unknown>).map(([key, child]) => [key, walk(child)]),
      )
    }
    return node
  }
  return walk(value) as T
}

/**
 * The password of a URL such as postgresql://user:p%40ss@host/db, as typed and percent-decoded: either form can
 * reach output (a driver error shows the decoded one), so both are masked.
 */
export function urlPasswordForms(url: string | undefined): string[] {
  const typed = /:\/\/[^:/@]*:([^@/]+)@/.exec(url ?? '')?.[1]
  if (!typed) return []
  try {
    return [...new Set([typed, decodeURIComponent(typed)])]
  } catch {
    return [typed] // a malformed escape: only the typed form can appear
  }
}
