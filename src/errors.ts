import {Errors} from '@oclif/core'

/** Exit codes are part of the interface: scripts and cron jobs rely on them (README "Exit codes"). */
export enum ExitCode {
  Ok = 0,
  Internal = 1,
  Usage = 2,
  Config = 3,
  Auth = 4,
  External = 5,
  CheckFailed = 6,
  Cancelled = 130,
}

export interface ErrorOptions {
  suggestions?: string[]
  ref?: string
  cause?: unknown
}

/** Base of every error mlflowctl reports on purpose: a stable code, an exit code and fix hints. */
export class MlflowctlError extends Errors.CLIError {
  readonly code: string
  readonly exit: ExitCode
  readonly ref?: string
  constructor(exit: ExitCode, code: string, message: string, options: ErrorOptions = {}) {
    super(message, {code, exit, suggestions: options.suggestions, ref: options.ref})
    this.code = code
    this.exit = exit
    this.ref = options.ref
    this.name = new.target.name
    if (options.cause !== undefined) Object.defineProperty(this, 'cause', {value: options.cause, enumerable: false})
  }

  get suggestionList(): string[] {
    return this.suggestions ?? []
  }
}

export class InternalError extends MlflowctlError {
  constructor(message: string, options?: ErrorOptions) {
    super(ExitCode.Internal, 'INTERNAL', message, options)
  }
}

export class UsageError extends MlflowctlError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(ExitCode.Usage, code, message, options)
  }
}

export class ConfigError extends MlflowctlError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(ExitCode.Config, code, message, options)
  }
}

export class AuthError extends MlflowctlError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(ExitCode.Auth, code, message, options)
  }
}

export class ExternalError extends MlflowctlError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(ExitCode.External, code, message, options)
  }
}

export class CheckFailedError extends MlflowctlError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(ExitCode.CheckFailed, code, message, options)
  }
}

export class CancelledError extends MlflowctlError {
  constructor(message = 'Cancelled.') {
    super(ExitCode.Cancelled, 'CANCELLED', message)
  }
}

const ISSUE_HINT = 'This is a bug in mlflowctl: re-run with DEBUG=mlflowctl:* and report it with that output.'

/** Maps anything thrown into an MlflowctlError; oclif's parse errors become usage errors (exit 2). */
export function toMlflowctlError(error: unknown): MlflowctlError {
  if (error instanceof MlflowctlError) return error
  if (error instanceof Errors.CLIError) {
    const exit = error.oclif?.exit
    // Every parser error (CLIParseError carries `parse`) is a usage error, including the ones oclif's
    // exitCodes table does not cover (an invalid option value exits 1 otherwise).
    const isParseError = (error as {parse?: unknown}).parse !== undefined
    if (isParseError || exit === ExitCode.Usage || exit === undefined) {
      return new UsageError('USAGE', error.message, {suggestions: error.suggestions, cause: error})
    }
    return new MlflowctlError(exit as ExitCode, (error as {code?: string}).code ?? 'ERROR', error.message, {cause: error})
  }
  const message = error instanceof Error ? error.message : String(error)
  return new InternalError(`${message}`, {suggestions: [ISSUE_HINT], cause: error})
}
