import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import semver from 'semver'

import {MlflowctlCommand} from '../../base-command.js'
import {APP_MODES, NEWEST_KNOWN_MLFLOW, type AppMode} from '../../core/versions.js'
import {bumpBundle, selectTarget, type BumpResult, type BumpSelector} from '../../core/version-bump.js'

const SELECTORS = ['to', 'patch', 'minor', 'major', 'latest'] as const

export default class VersionBump extends MlflowctlCommand<typeof VersionBump> {
  static summary = 'Move a rendered bundle to another MLflow release.'
  static description = `Rewrites requirements.txt (the MLflow pin and the driver pins that move with it; lines you added stay),
mlflowctl.json and manifest.json (file MD5s, Python requires). The app mode stays the bundle's, because Connect cannot
change a deployed item's: a python-api bundle moved to 3.3+ serves the FastAPI app through the a2wsgi bridge; --app-mode
renders another (python-fastapi needs 3.3+).
--patch/--minor pick the newest release of the same minor/major line, --major the newest of the next major, --latest the
newest, each up to the newest release this mlflowctl was tested with (--to takes any). Releases come from PyPI's JSON API (MLFLOWCTL_PYPI_URL for a mirror), or from the migration catalog offline.
A target whose Python floor the bundle's Python misses is refused. Deploy the result with mlflowctl deploy, or let
mlflowctl upgrade apply do both. Exit codes: 0 done (or already there), 2 bad flags, an unknown release or a Python
too old, 3 the bundle is not one mlflowctl rendered.`
  static examples = [
    '<%= config.bin %> <%= command.id %> ./mlflow-server --latest',
    '<%= config.bin %> <%= command.id %> ./mlflow-server --to 3.17.2 --json',
  ]
  static args = {
    dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', default: '.', exists: true}),
  }
  static flags = {
    to: Flags.string({summary: 'An exact MLflow release.', exactlyOne: [...SELECTORS], env: 'MLFLOWCTL_TO'}),
    patch: Flags.boolean({
      summary: 'The newest release of the same minor line.',
      exactlyOne: [...SELECTORS],
      env: 'MLFLOWCTL_PATCH',
    }),
    minor: Flags.boolean({
      summary: 'The newest release of the same major line.',
      exactlyOne: [...SELECTORS],
      env: 'MLFLOWCTL_MINOR',
    }),
    major: Flags.boolean({
      summary: 'The newest release of the next major line.',
      exactlyOne: [...SELECTORS],
      env: 'MLFLOWCTL_MAJOR',
    }),
    latest: Flags.boolean({summary: 'The newest release.', exactlyOne: [...SELECTORS], env: 'MLFLOWCTL_LATEST'}),
    'allow-downgrade': Flags.boolean({
      summary: 'Allow --to an older release than the bundle has (the database must not be ahead of it).',
      dependsOn: ['to'],
      env: 'MLFLOWCTL_ALLOW_DOWNGRADE',
    }),
    'app-mode': Flags.string({
      summary: "Render this app mode (default: keep the bundle's; Connect cannot change a deployed item's).",
      options: [...APP_MODES],
      env: 'MLFLOWCTL_APP_MODE',
    }),
  }

  async run(): Promise<Omit<BumpResult, 'writes'> & {files: string[]; releasesFrom: string}> {
    const dir = resolve(this.args.dir)
    const input = await this.deps.bundleFiles.readBumpInput(dir, this.config.version)
    const selector: BumpSelector = this.flags.to
      ? {kind: 'to', version: this.flags.to, allowDowngrade: this.flags['allow-downgrade']}
      : {kind: SELECTORS.find((name) => name !== 'to' && this.flags[name])! as 'patch'}
    const {releases, source, warning} = await this.deps.mlflowReleases()
    if (warning) this.warnUser(warning)
    // --patch/--minor/--major/--latest stop at the newest release this mlflowctl was tested with; --to goes anywhere.
    const tested =
      selector.kind === 'to'
        ? releases
        : releases.filter(
            (release) => !semver.valid(release.version) || semver.lte(release.version, NEWEST_KNOWN_MLFLOW),
          )
    const target = selectTarget(input.info.mlflowVersion, tested, selector)
    const untested = releases
      .filter((release) => semver.valid(release.version) && semver.gt(release.version, NEWEST_KNOWN_MLFLOW))
      .map((release) => release.version)
    if (selector.kind !== 'to' && untested.length > 0)
      this.warnUser(
        `MLflow ${untested.join(', ')} is newer than this mlflowctl was tested with (${NEWEST_KNOWN_MLFLOW}); take it with --to.`,
      )
    const result = bumpBundle({...input, appMode: this.flags['app-mode'] as AppMode | undefined}, target)
    await this.deps.bundleFiles.write(dir, result.writes)
    for (const message of result.warnings) this.warnUser(message)
    const lines = result.changed
      ? [
          result.from === result.to
            ? `MLflow ${result.to} in ${dir}, re-rendered`
            : `MLflow ${result.from} → ${result.to} in ${dir}`,
          ...result.writes.map((file) => `  wrote ${file.path}`),
          ...(result.appMode.from !== result.appMode.to
            ? [`  app mode ${result.appMode.from} → ${result.appMode.to}`]
            : []),
          ...(result.pythonRequires.from !== result.pythonRequires.to
            ? [`  Python ${result.pythonRequires.from} → ${result.pythonRequires.to}`]
            : []),
        ]
      : [`The bundle is already at MLflow ${result.to}.`]
    this.out([...lines, 'Next: mlflowctl upgrade plan --guid GUID --to VERSION, or mlflowctl deploy DIR.'].join('\n'))
    const {writes, ...rest} = result
    return {...rest, files: writes.map((file) => file.path), releasesFrom: source}
  }
}
