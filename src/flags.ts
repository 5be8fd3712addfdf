import {Flags} from '@oclif/core'

/** --server/--api-key/--ca-certificate/--profile for commands that talk to Connect. */
export const targetFlags = {
  server: Flags.string({summary: 'Posit Connect server URL (also CONNECT_SERVER).', env: 'MLFLOWCTL_SERVER'}),
  'api-key': Flags.string({
    summary: 'Connect API key (also CONNECT_API_KEY); prefer the env var.',
    env: 'MLFLOWCTL_API_KEY',
  }),
  'ca-certificate': Flags.file({
    summary: 'CA bundle for a Connect server with an internal CA (also CONNECT_CA_CERTIFICATE).',
    env: 'MLFLOWCTL_CA_CERTIFICATE',
  }),
  profile: Flags.string({summary: 'Profile in the config file to read defaults from.', env: 'MLFLOWCTL_PROFILE'}),
}

/** --metrics-file: a node-exporter textfile of the run (last success, duration, bytes, exit code). */
export const metricsFileFlag = Flags.string({
  summary:
    "Write how this run went (last success time, duration, bytes, exit code) to this node-exporter textfile (*.prom in the collector's directory; one file per job).",
  env: 'MLFLOWCTL_METRICS_FILE',
})

/** -E NAME=VALUE or -E NAME (copied from the local environment), as rsconnect-python does. */
export const envFlag = Flags.string({
  char: 'E',
  summary: 'Environment variable for the extension: NAME=VALUE, or NAME to copy it from your environment. Repeatable.',
  multiple: true,
  env: 'MLFLOWCTL_ENV',
})

/** --insecure must be explicit and always warns (base command). */
export const insecureFlag = Flags.boolean({
  summary: 'Skip TLS verification of the Connect server (testing only; prints a warning).',
  env: 'MLFLOWCTL_INSECURE',
})

/** Draft deploys (Connect 2025.06+): auto follows the server's version; a hidden version means off, as rsconnect decides. */
export const draftsFlag = Flags.string({
  summary: 'Deploy a draft and verify it before activation: auto (Connect 2025.06+ that shows its version), on, off.',
  options: ['auto', 'on', 'off'],
  default: 'auto',
  env: 'MLFLOWCTL_DRAFTS',
})

/** The flags of `mlflowctl doctor` (src/commands/doctor.ts). */
export const doctorFlags = {
  ...targetFlags,
  insecure: insecureFlag,
  'metrics-file': metricsFileFlag,
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
  dev: Flags.boolean({
    summary: 'Diagnose the local instance that `mlflowctl dev up DIR` started instead of a deployment on Connect.',
    env: 'MLFLOWCTL_DEV',
  }),
  'max-backup-age': Flags.string({
    summary: 'Fail when the last recorded backup is older, e.g. 26h or 7d.',
    env: 'MLFLOWCTL_MAX_BACKUP_AGE',
  }),
  'max-replica-lag': Flags.string({
    summary: "Warn when the extension's replica (MLFLOWCTL_REPLICA_URL) lags more, e.g. 30s or 5m.",
    default: '60s',
    env: 'MLFLOWCTL_MAX_REPLICA_LAG',
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

/** Which store `storage report` and `gc` work on: exactly one of --guid, --dev, --db (with --artifacts-source). */
export const storageTargetFlags = {
  ...targetFlags,
  insecure: insecureFlag,
  guid: Flags.string({
    summary: 'A deployment on Connect (its extension computes the report and runs the gc).',
    exactlyOne: ['guid', 'dev', 'db'],
    env: 'MLFLOWCTL_GUID',
  }),
  dev: Flags.string({
    summary: 'The bundle directory of an instance that `mlflowctl dev up DIR` started.',
    exactlyOne: ['guid', 'dev', 'db'],
    env: 'MLFLOWCTL_DEV_DIR',
  }),
  db: Flags.string({
    summary: 'A self-hosted store: sqlite:////path/mlflow.db or postgresql://… (with --artifacts-source).',
    exactlyOne: ['guid', 'dev', 'db'],
    env: 'MLFLOWCTL_DB',
  }),
  'artifacts-source': Flags.string({
    summary: "With --db: the server's --artifacts-destination (a directory, s3://, wasbs:// or gs://).",
    env: 'MLFLOWCTL_ARTIFACTS_SOURCE',
  }),
}
