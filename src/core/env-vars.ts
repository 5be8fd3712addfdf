import {UsageError} from '../errors.js'

export interface EnvVar {
  name: string
  value: string
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * Parses -E entries: NAME=VALUE sets a value, NAME alone copies it from `env`. Pure.
 * Error messages name the variable, never its value.
 * @throws UsageError INVALID_ENV_VAR / ENV_VAR_NOT_SET
 */
export function parseEnvVars(entries: string[] | undefined, env: Record<string, string | undefined>): EnvVar[] {
  const out = new Map<string, string>()
  for (const entry of entries ?? []) {
    const eq = entry.indexOf('=')
    const name = eq === -1 ? entry : entry.slice(0, eq)
    if (!NAME.test(name))
      throw new UsageError(
        'INVALID_ENV_VAR',
        `"${name}" is not a valid environment variable name (use -E NAME=VALUE or -E NAME).`,
      )
    if (eq === -1) {
      const value = env[name]
      if (value === undefined) {
        throw new UsageError(
          'ENV_VAR_NOT_SET',
          `-E ${name} copies ${name} from your environment, but it is not set there.`,
          {
            suggestions: [`Export ${name} first, or pass -E ${name}=VALUE.`],
          },
        )
      }
      out.set(name, value)
    } else {
      out.set(name, entry.slice(eq + 1))
    }
  }
  return [...out].map(([name, value]) => ({name, value}))
}

/** Values of variables whose names suggest a secret, plus URL passwords: fed to redact(). */
export function secretValuesOf(vars: EnvVar[]): string[] {
  const out: string[] = []
  for (const {name, value} of vars) {
    if (/PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL/i.test(name)) out.push(value)
    const password = /^[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:([^@/\s]+)@/i.exec(value)?.[1]
    if (password) out.push(password, decodeURIComponent(password))
  }
  return out
}
