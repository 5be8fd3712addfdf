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
