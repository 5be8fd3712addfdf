// Loaded with `node --import` before every test file (see scripts/test.mjs).
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const scratch = mkdtempSync(join(tmpdir(), 'mlflowctl-suite-'))

process.env.NO_COLOR = '1'
process.env.COLUMNS = '120'
process.env.MLFLOWCTL_CONFIG_DIR = join(scratch, 'config')
process.env.MLFLOWCTL_DATA_DIR = join(scratch, 'data')
// Hints spell the command as "mlflowctl …" wherever the suite runs (how the spelling is chosen is tested on its own).
process.env.MLFLOWCTL_INVOCATION = 'mlflowctl'
// Tests reach loopback only: PyPI is unreachable unless a test serves its own (MLFLOWCTL_PYPI_URL).
process.env.MLFLOWCTL_PYPI_URL ??= 'http://127.0.0.1:9'
// Venvs are expensive (minutes each): tests share the cache that .ci/run provisions.
process.env.MLFLOWCTL_CACHE_DIR = process.env.MLFLOWCTL_TEST_CACHE_DIR ?? join(root, '.cache', 'mlflowctl')
// Read CI once for the skip rule, then hide it so that commands see a neutral environment and the
// renderer policy is tested explicitly.
if (process.env.CI) process.env.MLFLOWCTL_TEST_IN_CI = '1'
delete process.env.CI
delete process.env.CONNECT_SERVER
delete process.env.CONNECT_API_KEY
