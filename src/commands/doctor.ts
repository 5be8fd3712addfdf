import {Args} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../base-command.js'
import {runDoctor, type DoctorResult} from '../core/doctor/index.js'
import {parseArtifactUrl} from '../core/artifact-url.js'
import {parseDatabaseUrl} from '../core/database-url.js'
import {parseDuration, parseSize} from '../core/units.js'
import {doctorFlags} from '../flags.js'
import {showDoctor} from '../output/views/doctor.js'

const list = (value?: string) =>
  value
    ?.split(',')
    .map((id) => id.trim())
    .filter(Boolean)

export default class Doctor extends MlflowctlCommand<typeof Doctor> {
  static summary = 'Diagnose a deployed extension layer by layer, with a fix for every failure.'
  static description = `Checks, concurrently and each within --timeout: the resolved config (with sources); Connect (DNS, TCP,
TLS and certificate expiry, version, API key, rights on the GUID, app mode, lock, min_processes, env var names for the
storage mode, OAuth integration, vanity URL); MLflow (/health, /version against the pin, accepted auth styles, a REST
round trip, a POST with the Connect Origin, and with --deep an artifact write/read/delete); the extension's ops status
(schema revision, free space, last backup age); the database from here (--db); the local mlflow client.
With --dev, the instance that \`mlflowctl dev up DIR\` started is checked instead (it replaces the config and Connect
layers; the MLflow, extension, database and client checks are the same).
Exit codes: 0 all passed or warned, 3 configuration missing, 4 authentication refused, 6 any other failure.`
  static examples = [
    '<%= config.bin %> <%= command.id %> ./mlflow-server',
    '<%= config.bin %> <%= command.id %> --dev ./mlflow-demo',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --deep --max-backup-age 26h --json',
    '<%= config.bin %> <%= command.id %> --db "postgresql://mlflow_iam@db.example:5432/mlflow?auth=rds-iam&region=us-east-1" --only database',
  ]
  static args = {
    dir: Args.directory({
      description: 'The deployed bundle directory (its deployment record gives the GUID).',
      default: '.',
    }),
  }
  static flags = doctorFlags

  async run(): Promise<DoctorResult> {
    const dir = resolve(this.args.dir)
    const target = this.flags.dev
      ? await this.deps.doctorTarget.dev(this.settings, dir)
      : await this.deps.doctorTarget.connect(this.deps, this.settings, {
          dir,
          guid: this.flags.guid,
          guidSource: process.argv.includes('--guid') ? 'flag' : 'env MLFLOWCTL_GUID',
        })
    // A dev instance's key and ops token are masked in the report like any secret.
    this.addSecrets(target.apiKey.value, target.opsToken)
    const probes = await this.deps.doctorProbes({
      server: target.server.value ?? 'http://unset.invalid',
      apiKey: target.apiKey.value ?? '',
      ca: target.ca,
      insecure: this.flags.insecure,
      timeoutMs: this.flags.timeout * 1000,
      dataDir: this.settings.dataDir,
      clientPython: process.env.MLFLOWCTL_CLIENT_PYTHON || 'python3',
    })
    const input = {
      ...target,
      profile: this.settings.profile.value ?? 'default',
      caCertificate: this.settings.caCertificate.value,
      deep: this.flags.deep,
      maxBackupAgeMs: this.flags['max-backup-age']
        ? parseDuration(this.flags['max-backup-age'], '--max-backup-age')
        : undefined,
      maxReplicaLagMs: parseDuration(this.flags['max-replica-lag'], '--max-replica-lag'),
      minFreeBytes: parseSize(this.flags['min-free'], '--min-free'),
      minFreeRatio: this.flags['min-free-percent'] / 100,
      database: this.flags.db ? parseDatabaseUrl(this.flags.db) : undefined,
      artifacts: this.flags.artifacts ? parseArtifactUrl(this.flags.artifacts) : undefined,
      awsRegion: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined,
    }
    const {guid, server} = target
    const what = target.dev
      ? `the dev instance of ${target.dev.bundleDir}`
      : `${guid.value ?? 'content'} on ${server.value ?? '(no server)'}`
    this.err(`Checking ${what}...`)
    const result = await runDoctor(probes, input, {
      only: list(this.flags.only),
      skip: list(this.flags.skip),
      timeoutMs: this.flags.timeout * 1000,
    })
    const failed = result.checks.filter((check) => check.status === 'fail')
    this.setExitCode(result.exitCode, {
      code:
        result.exitCode === 3
          ? 'DOCTOR_CONFIG_FAILED'
          : result.exitCode === 4
            ? 'DOCTOR_AUTH_FAILED'
            : 'DOCTOR_CHECKS_FAILED',
      message: `${failed.length} check(s) failed: ${failed.map((check) => check.id).join(', ')}.`,
      suggestions: failed.flatMap((check) => (check.fix ? [`${check.id}: ${check.fix}`] : [])),
    })
    this.out(showDoctor(result, this.paint, this.flags.verbose))
    return result
  }
}
