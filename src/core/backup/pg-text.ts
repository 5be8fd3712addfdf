/**
 * PostgreSQL's COPY text format, decoded into the archive's typed values. Pure.
 *
 * Text format: one row per line, columns separated by tabs, NULL as `\N`, and backslash escapes for
 * the few bytes that would break that (`\t`, `\n`, `\\`, octal `\123`, hex `\x41`). Values are
 * PostgreSQL's text output: `t`/`f` for booleans, `\x…` hex for bytea, `NaN`/`Infinity` for floats.
 */
import {encodeValue} from './format.js'

const SIMPLE_ESCAPES: Record<string, string> = {b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\'}

/** Undoes COPY's backslash escapes in one field. */
export function unescapeCopyField(field: string): string {
  if (!field.includes('\\')) return field
  let out = ''
  for (let i = 0; i < field.length; i++) {
    const char = field[i]
    if (char !== '\\' || i === field.length - 1) {
      out += char
      continue
    }
    const next = field[i + 1]
    if (SIMPLE_ESCAPES[next] !== undefined) {
      out += SIMPLE_ESCAPES[next]
      i++
    } else if (/[0-7]/.test(next)) {
      const octal = /^[0-7]{1,3}/.exec(field.slice(i + 1))![0]
      out += String.fromCharCode(Number.parseInt(octal, 8))
      i += octal.length
    } else if (next === 'x' && /^[0-9a-fA-F]/.test(field[i + 2] ?? '')) {
      const hex = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 2))![0]
      out += String.fromCharCode(Number.parseInt(hex, 16))
      i += 1 + hex.length
    } else {
      out += next // any other escaped character stands for itself
      i++
    }
  }
  return out
}

export type PgKind = 'integer' | 'float' | 'boolean' | 'bytea' | 'text'

/** The archive type for a PostgreSQL data type (information_schema.columns.data_type). */
export function pgKind(dataType: string): PgKind {
  const type = dataType.toLowerCase()
  if (['smallint', 'integer', 'bigint'].includes(type)) return 'integer'
  if (['real', 'double precision'].includes(type)) return 'float'
  if (type === 'boolean') return 'boolean'
  if (type === 'bytea') return 'bytea'
  return 'text' // varchar, text, json(b), numeric (kept exact as text), timestamps, uuid, enums
}

function typed(raw: string, kind: PgKind): unknown {
  switch (kind) {
    case 'integer':
      // Up to 15 digits a double is exact; BigInt only for the rare larger ones (it is slow per row).
      return raw.length < 16 ? Number(raw) : encodeValue(BigInt(raw))
    case 'float':
      return encodeValue(Number(raw)) // "NaN", "Infinity" and "-Infinity" parse to themselves
    case 'boolean':
      return raw === 't'
    case 'bytea':
      return encodeValue(Buffer.from(raw.slice(2), 'hex')) // bytea_output = hex: "\x0a1b…"
    case 'text':
      return raw
  }
}

/** One COPY text line (without its newline) as the archive's JSON row. */
export function decodeCopyLine(line: string, kinds: PgKind[]): unknown[] {
  const fields = line.split('\t')
  if (fields.length !== kinds.length) throw new Error(`COPY row has ${fields.length} fields, expected ${kinds.length}`)
  return fields.map((field, index) => (field === '\\N' ? null : typed(unescapeCopyField(field), kinds[index])))
}

/**
 * One value in COPY text, for rows read from SQLite (better-sqlite3 with safe integers): NULL as `\N`, integers
 * exact, NaN and infinities by name, bytes as bytea hex, and the escapes COPY needs (backslash, tab, newline, CR).
 * SQLite's 0/1 booleans are valid boolean input. Pure.
 */
export function encodeCopyField(value: unknown): string {
  if (value === null || value === undefined) return '\\N'
  if (typeof value === 'bigint') return value.toString()
  if (typeof value === 'number')
    return Number.isFinite(value) ? String(value) : Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity'
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `\\\\x${Buffer.from(value).toString('hex')}`
  return String(value).replace(/[\\\t\n\r]/g, (char) => COPY_ESCAPES[char])
}

const COPY_ESCAPES: Record<string, string> = {'\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r'}

/** A row as one COPY text line (without its newline). Pure. */
export const encodeCopyLine = (row: unknown[]): string => row.map(encodeCopyField).join('\t')
