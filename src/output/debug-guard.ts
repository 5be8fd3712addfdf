/**
 * DEBUG=* makes oclif (and the debug package under it) echo the whole command line, and a secret given as a flag
 * value would be printed with it. When DEBUG is set, everything written to stderr is masked first: the values of
 * secret flags (--api-key), URL passwords anywhere in argv, -E values of secret-looking variables and the secret
 * environment variables mlflowctl reads.
 */
import {redact, urlPasswordForms} from '../core/redact.js'
import {secretValuesOf} from '../core/env-vars.js'

const SECRET_FLAGS = ['--api-key']
const SECRET_ENV = ['CONNECT_API_KEY', 'MLFLOWCTL_API_KEY', 'MLFLOWCTL_OPS_TOKEN', 'MLFLOWCTL_BACKUP_PASSPHRASE']

/** The secret values in a command line and the environment. Pure. */
export function commandLineSecrets(argv: string[], env: Record<string, string | undefined>): string[] {
  const secrets: string[] = []
  argv.forEach((arg, index) => {
    const [flag, inline] =
      arg.startsWith('--') && arg.includes('=')
        ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
        : [arg, undefined]
    if (SECRET_FLAGS.includes(flag)) secrets.push(inline ?? argv[index + 1] ?? '')
    if ((flag === '-E' || flag === '--env') && (inline ?? argv[index + 1])?.includes('=')) {
      const pair = (inline ?? argv[index + 1])!
      secrets.push(
        ...secretValuesOf([{name: pair.slice(0, pair.indexOf('=')), value: pair.slice(pair.indexOf('=') + 1)}]),
      )
    }
    secrets.push(...urlPasswordForms(inline ?? arg))
  })
  for (const name of SECRET_ENV) if (env[name]) secrets.push(env[name]!)
  return secrets.filter((value) => value.length >= 4)
}

/** With DEBUG set, masks every later write to stderr (the debug package writes there). */
export function guardDebugOutput(argv: string[], env: Record<string, string | undefined>): void {
  if (!env.DEBUG) return
  const secrets = commandLineSecrets(argv, env)
  const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) =>
    write(
      typeof chunk === 'string' || Buffer.isBuffer(chunk) ? redact(chunk.toString(), secrets) : chunk,
      ...rest,
    )) as typeof process.stderr.write
}

/**
 * Warnings for secrets typed on the command line (visible in the process list and shell history), each with the
 * way to pass it instead: the flag's environment variable, or -E NAME to copy a variable from the environment. Pure.
 */
export function secretFlagWarnings(argv: string[]): string[] {
  const warnings: string[] = []
  argv.forEach((arg, index) => {
    if (!arg.startsWith('-')) return
    const inline = arg.includes('=') && arg.startsWith('--') ? arg.slice(arg.indexOf('=') + 1) : undefined
    const flag = inline === undefined ? arg : arg.slice(0, arg.indexOf('='))
    const value = inline ?? argv[index + 1] ?? ''
    const envName = `MLFLOWCTL_${flag.replace(/^-+/, '').toUpperCase().replaceAll('-', '_')}`
    if ((flag === '-E' || flag === '--env') && value.includes('=')) {
      const name = value.slice(0, value.indexOf('='))
      if (secretValuesOf([{name, value: value.slice(name.length + 1)}]).length > 0)
        warnings.push(
          `${flag} ${name}=… puts a secret on the command line (process list, shell history); export ${name} and pass ${flag} ${name} to copy it from your environment.`,
        )
    } else if (flag !== '--api-key' && urlPasswordForms(value).length > 0) {
      warnings.push(
        `${flag} carries a password, visible in the process list and shell history; set ${envName} in the environment instead${/^postgres/i.test(value) ? ', or leave the password out of the URL and use PGPASSWORD or ~/.pgpass' : ''}.`,
      )
    }
  })
  return warnings
}
