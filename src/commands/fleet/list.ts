import {Flags} from '@oclif/core'

import {FleetCommand, fleetFlags} from '../../fleet-command.js'
import {fleetRow, mapBounded, type FleetRow} from '../../core/fleet.js'
import {showFleetList} from '../../output/views/fleet.js'

/** The doctor each deployment gets in a fleet: this machine's own mlflow client is the same for every one. */
export const FLEET_DOCTOR_ARGS = ['--skip', 'client']

export default class FleetList extends FleetCommand<typeof FleetList> {
  static summary = 'List every mlflowctl deployment on a Connect server that the API key can see.'
  static description = `A deployment is recognised by its active bundle's mlflowctl.json (readable by its owner, collaborators and
administrators) or by the content tag "mlflowctl", which deploy sets when an administrator has created it (what a
viewer-only key can see). For each: GUID, name, owner, what the key may do, MLflow version and storage mode, the schema
state from the extension's ops status (needs the ops token deploy saved here, or MLFLOWCTL_OPS_TOKEN), the last backup
this machine recorded, the replica's lag, and the doctor's verdict (each deployment's doctor runs as its own process,
--jobs at once; --no-doctor skips it). Exit codes: 0 listed (whatever the deployments' states), 3/4/5 Connect refused
or could not be reached.`
  static examples = [
    '<%= config.bin %> <%= command.id %> --server https://connect.example.com',
    '<%= config.bin %> <%= command.id %> --no-doctor --json',
  ]
  static flags = {
    ...fleetFlags,
    doctor: Flags.boolean({
      summary: "Run each deployment's doctor for the DOCTOR column.",
      default: true,
      allowNo: true,
      env: 'MLFLOWCTL_FLEET_DOCTOR',
    }),
  }

  async run(): Promise<{deployments: FleetRow[]}> {
    const fleet = await this.fleet()
    const members = await this.members()
    const history = await this.deps.history(this.settings.dataDir).read()
    const rows = await mapBounded(members, this.flags.jobs, async (member) => {
      const status =
        member.access === 'manage' && !member.problem
          ? await fleet.status(member.guid).then(
              (found) => ({status: found}),
              (error: Error) => ({statusError: firstSentence(error.message)}),
            )
          : {statusError: member.problem ?? 'the key may only view it'}
      // The doctor of a deployment the key may only view would fail on rights alone: it is not run.
      const doctor =
        this.flags.doctor && member.access === 'manage' && !member.problem
          ? await fleet.run(member.guid, member.name, ['doctor', '--guid', member.guid, ...FLEET_DOCTOR_ARGS])
          : undefined
      return fleetRow(member, {
        ...status,
        history,
        doctor: doctor && {exitCode: doctor.exitCode, failed: failedChecks(doctor.result)},
      })
    })
    this.out(showFleetList(rows, Date.now()))
    return {deployments: rows}
  }
}

const firstSentence = (message: string) => message.split(/(?<=\.)\s/)[0].replace(/\.$/, '')

/** The IDs of the checks a doctor's --json result failed. */
function failedChecks(result: unknown): string[] {
  const checks = (result as {checks?: Array<{id: string; status: string}>} | undefined)?.checks ?? []
  return checks.filter((check) => check.status === 'fail').map((check) => check.id)
}
