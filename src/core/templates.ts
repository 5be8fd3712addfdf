import {InternalError} from '../errors.js'

const PLACEHOLDER = /\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}/g

/**
 * Replaces `{{key}}` markers. Strict: a marker without a value, or a value no marker uses, is an error,
 * so templates and code cannot drift apart silently. Pure.
 * @throws InternalError TEMPLATE_MISMATCH
 */
export function renderTemplate(name: string, text: string, values: Record<string, string>): string {
  const used = new Set<string>()
  const missing = new Set<string>()
  const out = text.replace(PLACEHOLDER, (_marker, key: string) => {
    if (!(key in values)) {
      missing.add(key)
      return ''
    }
    used.add(key)
    return values[key]
  })
  const unused = Object.keys(values).filter((key) => !used.has(key))
  if (missing.size > 0 || unused.length > 0) {
    throw new InternalError(
      `Template ${name} does not match its values (missing: ${[...missing].join(', ') || 'none'}; unused: ${unused.join(', ') || 'none'}).`,
    )
  }
  return out
}

/** Only the keys a template mentions, so one value set can serve several templates. */
export function placeholdersOf(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((match) => match[1]))]
}
