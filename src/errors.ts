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

/**
 * Base of every error mlflowctl reports on purpose: a stable code, an exit code and fix hints. Plain `Error`:
 * core throws these and depends on no CLI framework (the command layer maps oclif's own errors, output/errors.ts).
 * Each code belongs to one class, so to one exit code (test/unit/error-catalog.test.ts checks the sources).
 */
export class MlflowctlError extends Error {
  readonly code: string
  readonly exit: ExitCode
  readonly ref?: string
  readonly suggestions: string[]
  constructor(exit: ExitCode, code: string, message: string, options: ErrorOptions = {}) {
    super(message)
    this.code = code
    this.exit = exit
    this.ref = options.ref
    this.suggestions = options.suggestions ?? []
    this.name = new.target.name
    if (options.cause !== undefined) Object.defineProperty(this, 'cause', {value: options.cause, enumerable: false})
  }

  get suggestionList(): string[] {
    return this.suggestions
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
