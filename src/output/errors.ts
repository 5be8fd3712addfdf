import {Errors} from '@oclif/core'

import {closestMatch} from '../core/suggest.js'
import {
  CancelledError,
  ConfigError,
  ExitCode,
  ExternalError,
  InternalError,
  MlflowctlError,
  UsageError,
} from '../errors.js'

const ISSUE_HINT = 'This is a bug in mlflowctl: re-run with DEBUG=mlflowctl:* and report it with that output.'

/**
 * Maps anything thrown into an MlflowctlError: oclif's parse errors become usage errors (exit 2), and a Node
 * file-system error that no adapter mapped names its path and gets a typed code, so that only real bugs are
 * reported as bugs.
 */
export function toMlflowctlError(error: unknown, command?: {id: string; flags: string[]}): MlflowctlError {
  if (error instanceof MlflowctlError) return error
  const unknownFlags = (error as {flags?: unknown}).flags
  if (error instanceof Errors.CLIError && Array.isArray(unknownFlags) && command) {
    return unknownFlagError(unknownFlags as string[], command, error)
  }
  if (error instanceof Errors.CLIError) {
    const exit = error.oclif?.exit
    // Every parser error (CLIParseError carries `parse`) is a usage error, including the ones oclif's
    // exitCodes table does not cover (an invalid option value exits 1 otherwise).
    const isParseError = (error as {parse?: unknown}).parse !== undefined
    if (isParseError || exit === ExitCode.Usage || exit === undefined) {
      return new UsageError('USAGE', error.message, {suggestions: error.suggestions, cause: error})
    }
    if (exit === ExitCode.Cancelled) return new CancelledError(error.message)
    return new InternalError(error.message, {suggestions: [ISSUE_HINT], cause: error})
  }
  const fsError = fileSystemError(error)
  if (fsError) return fsError
  // oclif's Args/Flags.directory and .file with `exists: true` throw a plain Error while parsing.
  const missing = /^No (directory|file) found at (.+)$/.exec(error instanceof Error ? error.message : '')
  if (missing) {
    return new ConfigError('PATH_NOT_FOUND', `${missing[2]} does not exist (a ${missing[1]} was expected).`, {
      suggestions: ['Check the path (relative paths start from the current directory).'],
      cause: error,
    })
  }
  const message = error instanceof Error ? error.message : String(error)
  return new InternalError(`${message}`, {suggestions: [ISSUE_HINT], cause: error})
}

/** A mistyped flag (oclif's NonExistentFlagsError): exit 2, with the closest flag of the command. */
function unknownFlagError(typed: string[], command: {id: string; flags: string[]}, cause: unknown): UsageError {
  const name = command.id.split(':').join(' ')
  const guesses = typed.flatMap((flag) => {
    const match = closestMatch(flag.replace(/^-+/, '').split('=')[0], command.flags)
    return match ? [`Did you mean --${match} (not ${flag})?`] : []
  })
  return new UsageError(
    'UNKNOWN_FLAG',
    `${typed.join(', ')} ${typed.length === 1 ? 'is not a flag' : 'are not flags'} of ${name}.`,
    {suggestions: [...guesses, `mlflowctl ${name} --help lists its flags.`], cause},
  )
}

/** A Node file-system error (it carries `syscall` and `path`) as the typed error a user can act on. */
function fileSystemError(error: unknown): MlflowctlError | undefined {
  const {code, path, syscall} = (error ?? {}) as NodeJS.ErrnoException
  if (!code || !path || !syscall) return undefined
  const options = {cause: error}
  switch (code) {
    case 'ENOENT':
      return new ConfigError('PATH_NOT_FOUND', `${path} does not exist.`, {
        ...options,
        suggestions: ['Check the path (relative paths start from the current directory).'],
      })
    case 'EACCES':
    case 'EPERM':
      return new ConfigError('PATH_NOT_ACCESSIBLE', `Permission denied: ${path}.`, {
        ...options,
        suggestions: ['Run as a user who may read and write it, or choose another path.'],
      })
    case 'ENOTDIR':
    case 'EISDIR':
      return new UsageError(
        'PATH_INVALID',
        `${path}: ${code === 'ENOTDIR' ? 'a part of the path is a file, not a directory' : 'it is a directory, not a file'}.`,
        options,
      )
    case 'ENOSPC':
    case 'EDQUOT':
      return new ExternalError('DISK_FULL', `No space left on the device of ${path}.`, {
        ...options,
        suggestions: ['Free space on that file system, then run the command again.'],
      })
    case 'EROFS':
      return new ExternalError('PATH_UNUSABLE', `${path} is on a read-only file system.`, {
        ...options,
        suggestions: ['Choose a writable local directory.'],
      })
    default:
      return undefined
  }
}
