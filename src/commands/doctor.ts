import {Args, Flags} from '@oclif/core'
import {existsSync, readFileSync} from 'node:fs'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../base-command.js'
import type {Sourced} from '../core/doctor/checks.js'
import {runDoctor, type DoctorResult} from '../core/doctor/index.js'
import {parseArtifactUrl} from '../core/artifact-url.js'
import {parseDatabaseUrl} from '../core/database-url.js'
import {parseDuration, parseSize} from '../core/units.js'
import {insecureFlag, targetFlags} from '../flags.js'
import {createDoctorProbes} from '../adapters/doctor-probes.js'
import {showDoctor} from '../output/views/doctor.js'

const describeSource = (setting: {source: string; from?: string}) =>
  setting.from ? `${setting.source} ${setting.from}` : setting.source
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
Exit codes: 0 all passed or warned, 3 configuration missing, 4 authentication refused, 6 any other failure.`
  static examples = [
    '<%= config.bin %> <%= command.id %> ./mlflow-server',
    '<%= config.bin %> <%= command.id %> --guid 0b0e8e8e-1111-2222-3333-444455556666 --deep --max-backup-age 26h --json',
    '<%= config.bin %> <%= command.id %> --db "postgresql://mlflow_iam@db.example:5432/mlflow?auth=rds-iam&region=us-east-1" --only database',
  ]
  static args = {
    dir: Args.directory({
      description: 'The deployed bundle directory (its deployment record gives the GUID).',
      default: '.',
    }),
  }
  static flags = {
    ...targetFlags,
    insecure: insecureFlag,
    guid: Flags.string({
      summary: 'GUID of the content to diagnose (default: from the deployment record in DIR).',
      env: 'MLFLOWCTL_GUID',
    }),
    deep: Flags.boolean({
      summary: 'Also write, read and delete a probe file through the artifact proxy.',
      env: 'MLFLOWCTL_DEEP',
    }),
    only: Flags.string({
      summary: 'Run only these check IDs or categories (comma-separated), plus what they need.',
      env: 'MLFLOWCTL_ONLY',
    }),
    skip: Flags.string({summary: 'Skip these check IDs or categories (comma-separated).', env: 'MLFLOWCTL_SKIP'}),
    'max-backup-age': Flags.string({
      summary: 'Fail when the last recorded backup is older, e.g. 26h or 7d.',
      env: 'MLFLOWCTL_MAX_BACKUP_AGE',
    }),
    'min-free': Flags.string({
      summary: 'Warn when the data directory has less free space.',
      default: '1GiB',
      env: 'MLFLOWCTL_MIN_FREE',
    }),
    'min-free-percent': Flags.integer({
      summary: 'Warn when the data directory has less free space, in percent.',
      default: 10,
      min: 0,
      max: 100,
      env: 'MLFLOWCTL_MIN_FREE_PERCENT',
    }),
    db: Flags.string({
      summary: 'Database URL to check from here (see README "Database URLs for the CLI").',
      env: 'MLFLOWCTL_DB',
    }),
    artifacts: Flags.string({
      summary: 'Artifact store to check from here: s3://, wasbs:// or gs:// (as MLFLOW_ARTIFACTS_DESTINATION).',
      env: 'MLFLOWCTL_ARTIFACTS',
    }),
    timeout: Flags.integer({summary: 'Seconds each check may take.', default: 10, min: 1, env: 'MLFLOWCTL_TIMEOUT'}),
  }

  async run(): Promise<DoctorResult> {
    const {server, apiKey, caCertificate} = this.settings
    const ca = caCertificate.value && existsSync(caCertificate.value) ? readFileSync(caCertificate.value) : undefined
    const dir = resolve(this.args.dir)
    const store = this.deps.deploy({
      server: server.value ?? 'http://unset.invalid',
      apiKey: apiKey.value ?? '',
      ca,
      configDir: this.settings.configDir,
      dataDir: this.settings.dataDir,
    })
    const record = server.value && !this.flags.guid ? await store.readRecord(dir, server.value) : undefined
    const guid: Sourced = this.flags.guid
      ? {value: this.flags.guid, source: process.argv.includes('--guid') ? 'flag' : 'env MLFLOWCTL_GUID'}
      : {value: record?.guid, source: `deployment record in ${dir}`}
    const opsToken =
      process.env.MLFLOWCTL_OPS_TOKEN ||
      (server.value && guid.value ? await store.opsToken(server.value, guid.value) : undefined)
    const probes = createDoctorProbes({
      server: server.value ?? 'http://unset.invalid',
      apiKey: apiKey.value ?? '',
      ca,
      insecure: this.flags.insecure,
      timeoutMs: this.flags.timeout * 1000,
      dataDir: this.settings.dataDir,
      clientPython: process.env.MLFLOWCTL_CLIENT_PYTHON || 'python3',
    })
    const input = {
      server: {value: server.value, source: describeSource(server)},
      apiKey: {value: apiKey.value, source: describeSource(apiKey)},
      guid,
      profile: this.settings.profile.value ?? 'default',
      caCertificate: caCertificate.value,
      opsToken,
      deep: this.flags.deep,
      maxBackupAgeMs: this.flags['max-backup-age']
        ? parseDuration(this.flags['max-backup-age'], '--max-backup-age')
        : undefined,
      minFreeBytes: parseSize(this.flags['min-free'], '--min-free'),
      minFreeRatio: this.flags['min-free-percent'] / 100,
      database: this.flags.db ? parseDatabaseUrl(this.flags.db) : undefined,
      artifacts: this.flags.artifacts ? parseArtifactUrl(this.flags.artifacts) : undefined,
      awsRegion: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined,
    }
    this.err(`Checking ${guid.value ?? 'content'} on ${server.value ?? '(no server)'}...`)
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
