import {execFile} from 'node:child_process'
import {promisify} from 'node:util'

import {ConfigError} from '../../errors.js'

const run = promisify(execFile)

/** The interpreter mlflowctl uses to build venvs: MLFLOWCTL_PYTHON, else python3. */
export function pythonCommand(env: Record<string, string | undefined>): string {
  return env.MLFLOWCTL_PYTHON || 'python3'
}

/** Runs `python --version`. @throws ConfigError PYTHON_NOT_FOUND */
export async function detectPythonVersion(python: string): Promise<string> {
  try {
    const {stdout, stderr} = await run(python, ['-c', 'import platform; print(platform.python_version())'])
    const version = (stdout || stderr).trim()
    if (!/^\d+\.\d+\.\d+/.test(version)) throw new Error(`unexpected output "${version}"`)
    return version
  } catch (error) {
    throw new ConfigError('PYTHON_NOT_FOUND', `Cannot run ${python}: ${(error as Error).message}.`, {
      suggestions: ['Install Python 3.10 or newer, or point MLFLOWCTL_PYTHON at one.'],
    })
  }
}
