import {Listr, ListrLogger, ProcessOutput} from 'listr2'

import type {StepRunner} from '../core/ports.js'

export type RendererName = 'silent' | 'simple' | 'verbose' | 'default'

export interface RendererPolicyInput {
  json: boolean
  verbose: boolean
  stderrIsTTY: boolean
  env: Record<string, string | undefined>
}

/**
 * The listr2 renderer policy: silent under --json; simple (verbose with --verbose) when CI is set,
 * stderr is not a TTY or TERM=dumb; the default renderer otherwise. Chosen explicitly because
 * auto-detection misrenders pseudo-TTYs (Cypress #33890).
 */
export function chooseRenderer({json, verbose, stderrIsTTY, env}: RendererPolicyInput): RendererName {
  if (json) return 'silent'
  if (env.CI || !stderrIsTTY || env.TERM === 'dumb') return verbose ? 'verbose' : 'simple'
  return 'default'
}

/** A StepRunner backed by listr2 whose output goes to stderr (listr2 #716, fixed in PR #784). */
export function listrStepRunner(renderer: RendererName): StepRunner {
  const stderr = new ProcessOutput(process.stderr, process.stderr)
  const logger = new ListrLogger({processOutput: stderr})
  return {
    async step<T>(title: string, action: (report: (detail: string) => void) => Promise<T>): Promise<T> {
      let result: T | undefined
      const list = new Listr(
        [
          {
            title,
            task: async (_ctx, task) => {
              result = await action((detail) => {
                task.output = detail
              })
            },
          },
        ],
        {
          renderer,
          fallbackRenderer: 'simple',
          exitOnError: true,
          rendererOptions: {logger},
          fallbackRendererOptions: {logger},
        } as never,
      )
      await list.run()
      return result as T
    },
  }
}
