import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {loaderError} from '../../../src/adapters/backup/python-loader.js'

describe('loaderError', () => {
  it("gives the exception's own message from a traceback, never its connecting line", () => {
    const stderr = [
      'Traceback (most recent call last):',
      '  File "/venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py", line 145, in __init__',
      'sqlite3.OperationalError: unable to open database file',
      '',
      'The above exception was the direct cause of the following exception:',
      '',
      'Traceback (most recent call last):',
      'sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unable to open database file',
      '(Background on this error at: https://sqlalche.me/e/20/e3q8)',
    ].join('\n')
    const error = loaderError(stderr)
    assert.match(error.message, /unable to open database file/)
    assert.doesNotMatch(error.message, /above exception|Background on this error/)
  })

  it("keeps the loader's own one-line reason", () => {
    const error = loaderError('Restore failed: OperationalError: unable to open database file\n')
    assert.match(
      error.message,
      /Loading the backup failed; the target was left as it was\. Restore failed: OperationalError: unable/,
    )
  })
})
