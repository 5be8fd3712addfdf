import {ConfigError} from '../errors.js'

/** Where a setting's value came from; `doctor` prints it next to the value. */
export type SettingSource = 'flag' | 'env' | 'profile' | 'default'

export interface Setting<T> {
  value: T
  source: SettingSource
  /** The env var or profile key it was read from, when not a flag or default. */
  from?: string
}

export interface Profile {
  server?: string
  /** Name of the env var that holds the API key: profiles store references, never secret values. */
  apiKeyEnv?: string
  caCertificate?: string
  insecure?: boolean
}

export interface ProfileFile {
  profiles?: Record<string, Profile>
}

export interface Settings {
  profile: Setting<string>
  server: Setting<string | undefined>
  apiKey: Setting<string | undefined>
  caCertificate: Setting<string | undefined>
  configDir: string
  cacheDir: string
  dataDir: string
}

export interface LoadSettingsInput {
  flags: {server?: string; apiKey?: string; caCertificate?: string; profile?: string}
  env: Record<string, string | undefined>
  /** Parsed `${configDir}/config.json`, or undefined when the file does not exist. */
  profileFile?: ProfileFile
  dirs: {config: string; cache: string; data: string}
}

function pick<T>(candidates: Array<[SettingSource, string | undefined, T | undefined]>, fallback: T): Setting<T> {
  for (const [source, from, value] of candidates) {
    if (value !== undefined && value !== '') return {value, source, from}
  }
  return {value: fallback, source: 'default'}
}

/**
 * Resolves settings with the precedence flag > env > profile file > default. Pure.
 * CONNECT_SERVER, CONNECT_API_KEY and CONNECT_CA_CERTIFICATE are honoured as rsconnect-python does,
 * after their MLFLOWCTL_* names.
 * @throws ConfigError PROFILE_NOT_FOUND when a profile is named explicitly but is not in the file.
 */
export function loadSettings(input: LoadSettingsInput): Settings {
  const {flags, env, profileFile} = input
  const profileName = pick<string>(
    [
      ['flag', undefined, flags.profile],
      ['env', 'MLFLOWCTL_PROFILE', env.MLFLOWCTL_PROFILE],
    ],
    'default',
  )
  const profiles = profileFile?.profiles ?? {}
  const profile = profiles[profileName.value]
  if (!profile && profileName.source !== 'default') {
    const known = Object.keys(profiles)
    throw new ConfigError(
      'PROFILE_NOT_FOUND',
      `Profile "${profileName.value}" is not defined in ${input.dirs.config}/config.json.`,
      {
        suggestions: [
          known.length > 0
            ? `Use one of: ${known.join(', ')}.`
            : 'Create the profile in config.json, or drop --profile.',
        ],
      },
    )
  }
  const fromProfile = (key: keyof Profile) => `profile ${profileName.value}.${key}`
  const apiKeyEnv = profile?.apiKeyEnv
  return {
    profile: profileName,
    server: pick<string | undefined>(
      [
        ['flag', undefined, flags.server],
        ['env', 'MLFLOWCTL_SERVER', env.MLFLOWCTL_SERVER],
        ['env', 'CONNECT_SERVER', env.CONNECT_SERVER],
        ['profile', fromProfile('server'), profile?.server],
      ],
      undefined,
    ),
    apiKey: pick<string | undefined>(
      [
        ['flag', undefined, flags.apiKey],
        ['env', 'MLFLOWCTL_API_KEY', env.MLFLOWCTL_API_KEY],
        ['env', 'CONNECT_API_KEY', env.CONNECT_API_KEY],
        [
          'profile',
          apiKeyEnv ? `${fromProfile('apiKeyEnv')} -> $${apiKeyEnv}` : undefined,
          apiKeyEnv ? env[apiKeyEnv] : undefined,
        ],
      ],
      undefined,
    ),
    caCertificate: pick<string | undefined>(
      [
        ['flag', undefined, flags.caCertificate],
        ['env', 'MLFLOWCTL_CA_CERTIFICATE', env.MLFLOWCTL_CA_CERTIFICATE],
        ['env', 'CONNECT_CA_CERTIFICATE', env.CONNECT_CA_CERTIFICATE],
        ['profile', fromProfile('caCertificate'), profile?.caCertificate],
      ],
      undefined,
    ),
    configDir: input.dirs.config,
    cacheDir: env.MLFLOWCTL_CACHE_DIR || input.dirs.cache,
    dataDir: env.MLFLOWCTL_DATA_DIR || input.dirs.data,
  }
}

/** Parses config.json text; a malformed file is a ConfigError, never a crash. */
export function parseProfileFile(text: string, path: string): ProfileFile {
  try {
    const parsed = JSON.parse(text) as unknown
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
    const file = parsed as ProfileFile
    if (file.profiles !== undefined && (typeof file.profiles !== 'object' || Array.isArray(file.profiles)))
      throw new Error('"profiles" is not an object')
    return file
  } catch (error) {
    throw new ConfigError('CONFIG_INVALID', `${path} is not valid: ${(error as Error).message}.`, {
      suggestions: [`Fix or remove ${path}.`],
    })
  }
}
