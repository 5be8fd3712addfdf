/**
 * The checks `mlflowctl doctor` runs, layer by layer: config, Connect, MLflow, the extension, the database,
 * the local client (one file each). Each returns {status, detail, fix}; all I/O goes through DoctorProbes.
 * The order is the order of the report; a check runs after the ones it `needs`.
 */
import {configChecks} from './checks-config.js'
import {connectChecks} from './checks-connect.js'
import {mlflowChecks} from './checks-mlflow.js'
import {extensionChecks} from './checks-extension.js'
import {databaseChecks} from './checks-database.js'
import {clientChecks} from './checks-client.js'
import {upgradeChecks} from './checks-upgrade.js'
import {DEV_INSTANCE_CHECK, devChecks} from './checks-dev.js'
import type {CheckDefinition} from './runner.js'
import type {DoctorContext} from './context.js'

export * from './context.js'

/**
 * Whether MLflow and the extension answer at all comes before anything else either layer reports; every other
 * check keeps its layer's order. Named by ID, so that a check added to a layer can never fall out of the report.
 */
const ANSWERS_FIRST = ['mlflow.health', 'extension.status']

function answersFirst(layers: CheckDefinition<DoctorContext>[]): CheckDefinition<DoctorContext>[] {
  const first = ANSWERS_FIRST.map((id) => {
    const found = layers.find((check) => check.id === id)
    if (!found) throw new Error(`doctor: no check ${id} to put first`)
    return found
  })
  return [...first, ...layers.filter((check) => !ANSWERS_FIRST.includes(check.id))]
}

const deploymentLayers: CheckDefinition<DoctorContext>[] = [
  ...answersFirst([...mlflowChecks, ...extensionChecks]),
  ...databaseChecks,
  ...clientChecks,
]

/**
 * doctor --dev: the same MLflow, extension, database and client checks, behind the dev instance instead of
 * Connect (config and Connect checks do not apply to a loopback instance with its own key).
 */
export const DEV_DOCTOR_CHECKS: CheckDefinition<DoctorContext>[] = [
  ...devChecks,
  ...deploymentLayers.map((check) => ({
    ...check,
    needs: check.needs
      ?.filter((need) => !need.startsWith('config.'))
      .map((need) => (need === 'connect.content' ? DEV_INSTANCE_CHECK : need)),
  })),
]

export const DOCTOR_CHECKS: CheckDefinition<DoctorContext>[] = [
  ...configChecks,
  ...connectChecks,
  ...deploymentLayers,
  ...upgradeChecks,
]

/** The exit code doctor keeps: 3 configuration missing or wrong, 4 authentication refused, 6 any other
 * failure, 0 when everything passed or warned. */
export function doctorExitCode(results: Array<{id: string; status: string; exit?: 3 | 4}>): 0 | 3 | 4 | 6 {
  const failed = results.filter((result) => result.status === 'fail')
  if (failed.some((result) => result.id.startsWith('config.') || result.exit === 3)) return 3
  if (failed.some((result) => result.exit === 4)) return 4
  return failed.length > 0 ? 6 : 0
}
