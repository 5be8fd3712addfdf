import {createInterface} from 'node:readline/promises'

import {UsageError} from '../errors.js'

/** "Cannot prompt" means: --json, CI set, or stdin/stdout not a TTY (Shopify's rule, not gh's silent proceed). */
export function canPrompt(
  json: boolean,
  env: Record<string, string | undefined>,
  stdinTTY: boolean,
  stdoutTTY: boolean,
): boolean {
  return !json && !env.CI && stdinTTY && stdoutTTY
}

/** Returns a confirm function for a destructive step: --yes answers, a TTY asks, anything else refuses. */
export function confirmer(options: {
  yes: boolean
  json: boolean
  command: string
}): (question: string) => Promise<boolean> {
  return async (question) => {
    if (options.yes) return true
    if (!canPrompt(options.json, process.env, Boolean(process.stdin.isTTY), Boolean(process.stdout.isTTY))) {
      throw new UsageError('YES_REQUIRED', `${question} Cannot ask without a terminal.`, {
        suggestions: [`Re-run with --yes: ${options.command} --yes`],
      })
    }
    const rl = createInterface({input: process.stdin, output: process.stderr})
    try {
      return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim())
    } finally {
      rl.close()
    }
  }
}
