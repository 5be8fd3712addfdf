import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {Command, Flags, Interfaces} from '@oclif/core'

import type {ConnectTransferOptions} from './compose/command-deps.js'
import {loadSettings, parseProfileFile, type Settings} from './config/load.js'
import {createDeps, type CommandDeps} from './compose/command-deps.js'
import type {StepRunner} from './core/ports.js'
import {redact, redactDeep, urlPasswordForms} from './core/redact.js'
import {CancelledError, ConfigError, ExitCode, type MlflowctlError} from './errors.js'
import {painter, useColor, type Painter} from './output/color.js'
import {toMlflowctlError} from './output/errors.js'
import {localInvocation} from './output/invocation.js'
import {secretFlagWarnings} from './output/debug-guard.js'
import {chooseRenderer, listrStepRunner} from './output/tasks.js'

export type CommandFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof MlflowctlCommand)['baseFlags'] & T['flags']
>
export type CommandArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

export interface SuccessEnvelope<R> {
  status: number
  result: R
  warnings: string[]
  /** Present exactly when status is not 0 (a computed negative outcome: doctor's failures, dev status stopped). */
  error?: {code: string; message: string; suggestions: string[]}
}

/** Where and how a command reaches Connect (see MlflowctlCommand.connection). */
export interface ConnectConnection {
  server: string
  apiKey: string
  ca?: Buffer
  insecure: boolean
}

export interface ErrorEnvelope {
  status: number
  error: {code: string; message: string; suggestions: string[]; ref?: string}
}

/**
 * The base of every command: parsing, settings, the JSON envelope, typed exit codes, redaction of
 * secrets, the stdout/stderr split and the listr2 renderer policy.
 */
export abstract class MlflowctlCommand<T extends typeof Command> extends Command {
  static enableJsonFlag = true
  static baseFlags = {
    verbose: Flags.boolean({
      char: 'v',
      summary: 'Show detailed progress and debug output on stderr.',
      env: 'MLFLOWCTL_VERBOSE',
    }),
    'no-color': Flags.boolean({summary: 'Do not colour output.', env: 'MLFLOWCTL_NO_COLOR'}),
  }

  /** The composition root (src/compose/command-deps.ts); tests put a factory of fakes here to run commands in process. */
  static createDeps: () => CommandDeps = createDeps
  /** Where results and progress go; in-process tests capture them here (the test runner owns process.stdout). */
  static streams = {
    stdout: (text: string): void => void process.stdout.write(text),
    stderr: (text: string): void => void process.stderr.write(text),
  }

  /** The JSON envelope, through the same stream as every other result. */
  public logJson(json: unknown): void {
    MlflowctlCommand.streams.stdout(`${JSON.stringify(json, null, 2)}\n`)
  }

  protected flags!: CommandFlags<T>
  protected args!: CommandArgs<T>
  protected settings!: Settings
  protected paint!: Painter
  protected readonly warnings: string[] = []
  private exitStatus: number = ExitCode.Ok
  private readonly cleanups: Array<() => Promise<void> | void> = []

  public async init(): Promise<void> {
    await super.init()
    const ctor = this.ctor as typeof MlflowctlCommand
    const {args, flags} = await this.parse({
      flags: ctor.flags,
      baseFlags: (super.ctor as typeof MlflowctlCommand).baseFlags,
      enableJsonFlag: ctor.enableJsonFlag,
      args: ctor.args,
      strict: ctor.strict,
    })
    this.flags = flags as CommandFlags<T>
    this.args = args as CommandArgs<T>
    this.paint = painter(
      useColor({noColorFlag: Boolean(flags['no-color']), env: process.env, isTTY: Boolean(process.stdout.isTTY)}),
    )
    this.settings = this.loadSettings()
    if (this.settings.apiKey.source === 'flag')
      this.warnUser('--api-key is visible in the process list; prefer the CONNECT_API_KEY environment variable.')
    for (const warning of secretFlagWarnings(this.argv)) this.warnUser(warning)
    if ((flags as Record<string, unknown>).insecure)
      this.warnUser('--insecure: TLS certificates of the Connect server are not verified.')
    process.once('SIGINT', () => void this.cancel())
  }

  /** Flags > env > profile file > defaults (src/config/load.ts). */
  protected loadSettings(): Settings {
    const env = process.env
    const configDir = env.MLFLOWCTL_CONFIG_DIR || this.config.configDir
    const path = join(configDir, 'config.json')
    const profileFile = existsSync(path) ? parseProfileFile(readFileSync(path, 'utf8'), path) : undefined
    const flags = this.flags as Record<string, unknown>
    return loadSettings({
      flags: {
        server: flags.server as string | undefined,
        apiKey: flags['api-key'] as string | undefined,
        caCertificate: flags['ca-certificate'] as string | undefined,
        profile: flags.profile as string | undefined,
      },
      env,
      profileFile,
      dirs: {config: configDir, cache: this.config.cacheDir, data: this.config.dataDir},
    })
  }

  /**
   * The Connect server and API key a command needs, read once here for every command: missing settings are
   * one error, CONNECT_NOT_CONFIGURED (exit 3), that names what is missing.
   */
  protected connection(purpose: string): ConnectConnection {
    const {server, apiKey} = this.settings
    const missing = [server.value ? '' : 'a Connect server', apiKey.value ? '' : 'an API key'].filter(Boolean)
    if (missing.length > 0) {
      throw new ConfigError('CONNECT_NOT_CONFIGURED', `${purpose} needs ${missing.join(' and ')}.`, {
        suggestions: [
          ...(server.value ? [] : ['Set CONNECT_SERVER (or pass --server URL).']),
          ...(apiKey.value ? [] : ['Set CONNECT_API_KEY (preferred over --api-key).']),
          'Or choose a profile of the config file with --profile.',
        ],
      })
    }
    return {
      server: server.value!,
      apiKey: apiKey.value!,
      ca: this.caBundle(),
      insecure: Boolean((this.flags as Record<string, unknown>).insecure),
    }
  }

  /** The CA bundle of --ca-certificate / CONNECT_CA_CERTIFICATE, read once; a file that is not there is CA_NOT_FOUND. */
  protected caBundle(): Buffer | undefined {
    const path = this.settings.caCertificate.value
    if (!path) return undefined
    if (this.caCache === undefined) {
      try {
        this.caCache = readFileSync(path)
      } catch (error) {
        throw new ConfigError(
          'CA_NOT_FOUND',
          `Cannot read the CA certificate ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}.`,
          {
            suggestions: [
              "Pass the PEM file of the CA that signed the Connect server's certificate with --ca-certificate, or set CONNECT_CA_CERTIFICATE.",
            ],
            cause: error,
          },
        )
      }
    }
    return this.caCache
  }

  /** What backup, restore, db and upgrade commands need to reach an extension through Connect (connect:GUID). */
  protected connectTransfer(): ConnectTransferOptions {
    const {server, apiKey, configDir} = this.settings
    return this.deps.connectTransfer({
      server: server.value,
      apiKey: apiKey.value,
      ca: () => this.caBundle(),
      insecure: Boolean((this.flags as Record<string, unknown>).insecure),
      configDir,
    })
  }

  /** The adapters this command runs core with, built once, on first use. */
  protected get deps(): CommandDeps {
    this.builtDeps ??= MlflowctlCommand.createDeps()
    return this.builtDeps
  }

  private builtDeps?: CommandDeps
  private caCache?: Buffer
  private runtimeSecrets: string[] = []

  /** Values that must never be printed: redaction masks them everywhere. */
  protected secrets(): string[] {
    return [
      this.settings?.apiKey?.value,
      process.env.CONNECT_API_KEY,
      process.env.MLFLOWCTL_OPS_TOKEN,
      process.env.MLFLOWCTL_BACKUP_PASSPHRASE,
      ...this.runtimeSecrets,
    ].filter((v): v is string => Boolean(v))
  }

  /** Masks more values from here on, for example secret env var values a command was given. */
  protected addSecrets(...values: Array<string | undefined>): void {
    this.runtimeSecrets.push(...values.filter((v): v is string => Boolean(v)))
  }

  /** Masks the password of a database URL given on the command line, as typed and percent-decoded. */
  protected addUrlPassword(url: string | undefined): void {
    this.addSecrets(...urlPasswordForms(url))
  }

  /** Result text for humans: stdout, silent under --json. */
  protected out(text: string): void {
    if (!this.jsonEnabled()) MlflowctlCommand.streams.stdout(`${this.printable(text)}\n`)
  }

  /** Progress and hints: stderr, silent under --json. */
  protected err(text: string): void {
    if (!this.jsonEnabled()) MlflowctlCommand.streams.stderr(`${this.printable(text)}\n`)
  }

  /**
   * Result text that carries a secret on purpose (the key of a local dev instance, which the user needs): stdout,
   * silent under --json, never masked. Everything else goes through out().
   */
  protected outIncludingSecret(text: string): void {
    if (!this.jsonEnabled()) MlflowctlCommand.streams.stdout(`${localInvocation(this.config).rewrite(text)}\n`)
  }

  /** Text as it may be shown: secrets masked, and "mlflowctl <command>" spelled the way that runs here. */
  protected printable(text: string): string {
    return localInvocation(this.config).rewrite(redact(text, this.secrets()))
  }

  /** A warning goes to stderr now and into the JSON envelope's `warnings`. */
  protected warnUser(message: string): void {
    this.warnings.push(redact(message, this.secrets()))
    this.err(`${this.paint.warn('Warning:')} ${message}`)
  }

  protected tasks(): StepRunner {
    const renderer = chooseRenderer({
      json: this.jsonEnabled(),
      verbose: Boolean((this.flags as Record<string, unknown>).verbose),
      stderrIsTTY: Boolean(process.stderr.isTTY),
      env: process.env,
    })
    return listrStepRunner(renderer)
  }

  /**
   * For outcomes that are computed but negative (e.g. "not running"): set the code, do not throw. A non-zero code
   * needs the error it stands for: the envelope keeps `result` and adds `error`, so that "status ≠ 0 ⇒ error.code"
   * holds for every command (README "JSON output").
   */
  protected setExitCode(code: ExitCode, error?: {code: string; message: string; suggestions?: string[]}): void {
    this.exitStatus = code
    this.negativeOutcome =
      code === ExitCode.Ok ? undefined : (error ?? {code: 'CHECK_FAILED', message: 'The check failed.'})
    process.exitCode = code
  }

  private negativeOutcome?: {code: string; message: string; suggestions?: string[]}

  /** Registers work for finally() (stopping child processes, closing pools). */
  protected onCleanup(action: () => Promise<void> | void): void {
    this.cleanups.push(action)
  }

  protected toSuccessJson(result: unknown): SuccessEnvelope<unknown> {
    const envelope: SuccessEnvelope<unknown> = {
      status: this.exitStatus,
      result: redactDeep(result, this.secrets()),
      warnings: this.warnings,
    }
    if (this.negativeOutcome) {
      const {code, message, suggestions = []} = this.negativeOutcome
      envelope.error = {code, message: this.printable(message), suggestions: suggestions.map((s) => this.printable(s))}
    }
    return envelope
  }

  protected toErrorJson(error: unknown): ErrorEnvelope {
    const mapped = this.mapError(error)
    return {
      status: mapped.exit,
      error: {
        code: mapped.code,
        message: this.printable(mapped.message),
        suggestions: mapped.suggestionList.map((s) => this.printable(s)),
        ...(mapped.ref ? {ref: mapped.ref} : {}),
      },
    }
  }

  /** The typed error for anything thrown; a mistyped flag is compared with this command's flags. */
  private mapError(error: unknown): MlflowctlError {
    const ctor = this.ctor as typeof MlflowctlCommand
    const flags = Object.entries({...ctor.baseFlags, ...ctor.flags})
      .filter(([, flag]) => !(flag as {hidden?: boolean}).hidden)
      .map(([name]) => name)
    return toMlflowctlError(error, {id: this.id ?? ctor.id, flags: [...flags, 'json', 'help']})
  }

  /** Maps every error to its typed exit code (also under --json, where oclif would collapse it to 1). */
  protected async catch(error: Error & {exitCode?: number}): Promise<void> {
    const mapped: MlflowctlError = this.mapError(error)
    process.exitCode = mapped.exit
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(mapped))
      return
    }
    // init() may fail before the painter exists (a flag parse error).
    const paint = this.paint ?? painter(false)
    const lines = [`${paint.fail('Error:')} ${mapped.message}`]
    if (mapped.suggestionList.length > 0) lines.push('Try this:', ...mapped.suggestionList.map((s) => `  ${s}`))
    if (mapped.ref) lines.push(`See ${mapped.ref}`)
    if (mapped.exit === ExitCode.Internal && process.env.DEBUG && error.stack) lines.push(error.stack)
    MlflowctlCommand.streams.stderr(`${this.printable(lines.join('\n'))}\n`)
  }

  private readonly startedAt = Date.now()
  private metricBytes?: number
  private metricMembers?: Array<{target: string; exitCode: number}>

  /** The size a --metrics-file reports for this run (a backup's stored bytes). */
  protected recordMetricBytes(bytes: number | undefined): void {
    this.metricBytes = bytes
  }

  /** Each deployment's exit code, for a fleet command's --metrics-file. */
  protected recordMetricTargets(members: Array<{target: string; exitCode: number}>): void {
    this.metricMembers = members
  }

  /** What the run worked on, as the metrics file labels it: the GUID, the source, else the server. */
  protected metricTarget(): string {
    const flags = (this.flags ?? {}) as Record<string, unknown>
    const guid = Array.isArray(flags.guid) ? flags.guid.join(',') : flags.guid
    return String(guid || flags.source || this.settings?.server.value || '')
  }

  /** --metrics-file: written whatever the outcome, after the command's own output. */
  private async writeMetricsFile(error: Error | undefined): Promise<void> {
    const path = (this.flags as Record<string, unknown> | undefined)?.['metrics-file']
    if (typeof path !== 'string' || !path) return
    const exitCode =
      error instanceof CancelledError ? ExitCode.Cancelled : Number(process.exitCode ?? (error ? ExitCode.Internal : 0))
    const {writeMetricsFile} = await import('./adapters/fs/metrics-file.js')
    await writeMetricsFile(path, {
      command: (this.id ?? '').replaceAll(':', ' '),
      target: redact(this.metricTarget(), this.secrets()),
      exitCode,
      startedAt: this.startedAt,
      finishedAt: Date.now(),
      bytes: this.metricBytes,
      members: this.metricMembers,
    }).catch((failure: Error) => MlflowctlCommand.streams.stderr(`Warning: ${failure.message}\n`))
  }

  protected async finally(error: Error | undefined): Promise<void> {
    await this.writeMetricsFile(error)
    for (const action of this.cleanups.reverse()) {
      try {
        await action()
      } catch {
        // cleanup is best effort; the command's own outcome is what gets reported
      }
    }
    await super.finally(error)
  }

  private async cancel(): Promise<void> {
    await this.finally(new CancelledError())
    process.stderr.write('Cancelled.\n')
    process.exit(ExitCode.Cancelled)
  }
}
