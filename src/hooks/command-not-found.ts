import type {Hook} from '@oclif/core'

import {closestMatch} from '../core/suggest.js'
import {ExitCode} from '../errors.js'
import {localInvocation} from '../output/invocation.js'

/**
 * An unknown command is a usage error (exit 2), with the closest command as a suggestion, and in the JSON envelope
 * when --json was given (oclif would exit 1 with plain text).
 */
const hook: Hook<'command_not_found'> = async function ({id, argv, config}) {
  const typed = id.split(':').join(' ')
  const commands = config.commands
    .filter((command) => !command.hidden)
    .map((command) => command.id.split(':').join(' '))
  const match = closestMatch(typed, commands)
  const message = `${typed} is not a mlflowctl command.`
  const {rewrite} = localInvocation(config)
  const suggestions = [
    ...(match ? [`Did you mean ${match}?`] : []),
    rewrite('Run mlflowctl --help for the list of commands.'),
  ]
  if (argv?.includes('--json')) {
    process.stdout.write(
      `${JSON.stringify({status: ExitCode.Usage, error: {code: 'UNKNOWN_COMMAND', message, suggestions}}, null, 2)}\n`,
    )
  } else {
    process.stderr.write(`Error: ${message}\nTry this:\n${suggestions.map((s) => `  ${s}`).join('\n')}\n`)
  }
  process.exit(ExitCode.Usage)
}

export default hook
