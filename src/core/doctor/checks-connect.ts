// Doctor checks of one layer: Connect: the server, TLS, the key, the content and its settings.
import {connectVersionAtLeast, parseConnectVersion} from '../connect-version.js'
import {OAUTH_STORAGE_MODES, REQUIRED_ENV} from '../bundle.js'
import type {CheckDefinition} from './runner.js'
import {
  MIN_CONNECT_VERSION,
  CERT_EXPIRY_WARN_DAYS,
  pass,
  warn,
  fail,
  serverUrl,
  keyHeader,
  storageModeOf,
  answerFailure,
  type DoctorContext,
} from './context.js'

export const connectChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'connect.dns',
    category: 'connect',
    title: 'DNS',
    needs: ['config.server'],
    async run(ctx) {
      const host = serverUrl(ctx).hostname.replace(/^\[|\]$/g, '')
      try {
        const addresses = await ctx.probes.lookup(host)
        return pass(`${host} → ${addresses.join(', ')}`)
      } catch (error) {
        return fail(`${host} does not resolve: ${(error as Error).message}`, 'Check the server name, your DNS or VPN.')
      }
    },
  },
  {
    id: 'connect.tcp',
    category: 'connect',
    title: 'TCP',
    needs: ['connect.dns'],
    async run(ctx) {
      const url = serverUrl(ctx)
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
      try {
        await ctx.probes.tcp(url.hostname.replace(/^\[|\]$/g, ''), port)
        return pass(`${url.hostname}:${port} accepts connections`)
      } catch (error) {
        return fail(
          `${url.hostname}:${port}: ${(error as Error).message}`,
          'Check that Connect runs and that firewalls, proxies or security groups let this machine reach it.',
        )
      }
    },
  },
  {
    id: 'connect.tls',
    category: 'connect',
    title: 'TLS certificate',
    needs: ['connect.tcp'],
    async run(ctx) {
      const url = serverUrl(ctx)
      if (url.protocol === 'http:') {
        const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)
        return loopback
          ? pass('plain HTTP on loopback: nothing to check')
          : warn('plain HTTP: the API key crosses the network unencrypted', 'Use the https:// URL of Connect.')
      }
      const info = await ctx.probes.tls(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port || 443))
      const daysLeft = Math.floor((Date.parse(info.validTo) - ctx.probes.now()) / 86_400_000)
      if (!info.authorized) {
        const internal =
          info.selfSigned || /self[- ]signed|unable to get local issuer|UNABLE_TO_VERIFY/i.test(info.error ?? '')
        const expired = /expired/i.test(info.error ?? '') || daysLeft < 0
        const fix = expired
          ? 'Renew the server certificate (it has expired).'
          : internal
            ? `Trust your internal CA: pass --ca-certificate /path/ca.pem or set CONNECT_CA_CERTIFICATE${ctx.input.caCertificate ? ` (the current one, ${ctx.input.caCertificate}, does not verify it)` : ''}.`
            : 'Fix the server certificate (its name must match the URL and its chain must be complete).'
        return fail(
          `certificate not trusted: ${info.error ?? 'unknown reason'} (issuer ${info.issuer}, valid until ${info.validTo})`,
          fix,
        )
      }
      if (daysLeft < CERT_EXPIRY_WARN_DAYS)
        return warn(
          `the certificate expires in ${daysLeft} days (${info.validTo})`,
          'Renew the server certificate before it expires.',
        )
      return pass(`valid until ${info.validTo} (${daysLeft} days), issuer ${info.issuer}`)
    },
  },
  {
    id: 'connect.version',
    category: 'connect',
    title: `Connect version (≥ ${MIN_CONNECT_VERSION})`,
    needs: ['connect.tls', 'config.api-key'],
    async run(ctx) {
      const answer = await ctx.probes.serverVersion()
      if (!answer.ok) return answerFailure('the server settings', answer)
      if (!answer.value)
        return warn(
          'the server hides its version',
          `Make sure it is ${MIN_CONNECT_VERSION} or newer (persistent content storage); an admin can unhide the version.`,
        )
      const version = parseConnectVersion(answer.value)
      if (version && !connectVersionAtLeast(version, parseConnectVersion(MIN_CONNECT_VERSION)!))
        return fail(
          `Connect ${answer.value} is older than ${MIN_CONNECT_VERSION}`,
          `Upgrade Connect to ${MIN_CONNECT_VERSION}+ (the extension needs its persistent content storage).`,
        )
      return pass(`Connect ${answer.value}`)
    },
  },
  {
    id: 'connect.auth',
    category: 'connect',
    title: 'API key accepted',
    needs: ['connect.tls', 'config.api-key'],
    async run(ctx) {
      const answer = await ctx.probes.currentUser()
      if (!answer.ok) return answerFailure('the current user', answer)
      ctx.facts.user = answer.value
      if (answer.value.role === 'viewer')
        return warn(
          `${answer.value.username} is a viewer`,
          'Viewers cannot deploy or manage content: use a publisher or administrator key.',
        )
      return pass(`${answer.value.username} (${answer.value.role})`)
    },
  },
  {
    id: 'connect.access',
    category: 'connect',
    title: 'Rights on the content',
    needs: ['connect.auth', 'config.guid'],
    async run(ctx) {
      const answer = await ctx.probes.content(ctx.input.guid.value!)
      if (!answer.ok && answer.status === 404)
        return {
          ...fail(
            `Connect has no content with GUID ${ctx.input.guid.value}`,
            'Check --guid (the dashboard URL ends with it), or the server: a GUID belongs to one Connect server.',
          ),
          exit: 3,
        }
      if (!answer.ok) return answerFailure(`content ${ctx.input.guid.value}`, answer)
      ctx.facts.content = answer.value
      const user = ctx.facts.user!
      const relation =
        answer.value.ownerGuid === user.guid
          ? 'owner'
          : user.role === 'administrator'
            ? 'administrator'
            : 'collaborator'
      return pass(
        `${user.username} is ${relation === 'administrator' ? 'an administrator' : `the ${relation}`} of "${answer.value.name}"`,
      )
    },
  },
  {
    id: 'connect.content',
    category: 'connect',
    title: 'Content deployed, app mode',
    needs: ['connect.access'],
    async run(ctx) {
      const content = ctx.facts.content!
      if (!content.bundleId)
        return fail(
          'no bundle is active: the content was created but never deployed successfully',
          'Deploy it: mlflowctl deploy DIR --guid GUID.',
        )
      if (!['python-fastapi', 'python-api'].includes(content.appMode))
        return fail(
          `app mode is ${content.appMode}, not python-fastapi or python-api: this is not the MLflow extension`,
          'Check --guid, or redeploy a bundle rendered by mlflowctl init.',
        )
      return pass(`bundle ${content.bundleId}, app mode ${content.appMode}`)
    },
  },
  {
    id: 'connect.state',
    category: 'connect',
    title: 'Not locked, processes kept warm, last deploy',
    needs: ['connect.content'],
    async run(ctx) {
      const content = ctx.facts.content!
      if (content.locked)
        return fail(
          'the content is locked: it neither runs nor accepts deploys',
          'Unlock it in Connect (Settings > Info), or ask an administrator.',
        )
      const events = (await ctx.probes.history()).filter(
        (event) => event.guid === content.guid && (event.action === 'deploy' || event.action === 'rollback'),
      )
      const last = events.at(-1)
      const lastText = last
        ? `last ${last.action} from this machine ${last.result === 'ok' ? 'succeeded' : 'FAILED'} (${last.time})`
        : 'no deploy recorded on this machine'
      if (last && last.result !== 'ok')
        return fail(lastText, `See the task log in Connect, fix the cause, and redeploy; ${last.message ?? ''}`.trim())
      if ((content.minProcesses ?? 0) < 1)
        return warn(
          `min_processes is ${content.minProcesses ?? 'unset (0)'}: the server stops when idle and the next request waits for a cold start; ${lastText}`,
          'Set min_processes to 1 (mlflowctl deploy does; or Settings > Runtime in Connect).',
        )
      return pass(`min_processes ${content.minProcesses}; ${lastText}`)
    },
  },
  {
    id: 'connect.env',
    category: 'connect',
    title: 'Environment variable names for the storage mode',
    needs: ['connect.content'],
    async run(ctx) {
      const answer = await ctx.probes.environmentNames(ctx.input.guid.value!)
      if (!answer.ok) return answerFailure('the environment variable names', answer)
      ctx.facts.envNames = answer.value
      const mode = storageModeOf(ctx)!
      const required = [...REQUIRED_ENV[mode], 'MLFLOWCTL_OPS_TOKEN']
      const missing = required.filter((name) => !answer.value.includes(name))
      if (missing.length > 0)
        return fail(
          `storage mode ${mode} needs ${missing.join(', ')}, not set on the content`,
          `Set ${missing.length > 1 ? 'them' : 'it'}: mlflowctl deploy DIR --guid GUID ${missing.map((name) => `-E ${name}=…`).join(' ')}`,
        )
      return pass(`storage mode ${mode}: ${required.join(', ')} set`)
    },
  },
  {
    id: 'connect.oauth',
    category: 'connect',
    title: 'OAuth integration for cloud credentials',
    needs: ['connect.env'],
    async run(ctx) {
      const mode = storageModeOf(ctx)!
      if (!OAUTH_STORAGE_MODES.includes(mode)) return pass(`storage mode ${mode} needs none`)
      if (ctx.facts.envNames?.includes('MLFLOWCTL_CREDENTIALS'))
        return pass('MLFLOWCTL_CREDENTIALS is set: the content may use the SDK chain (ambient)')
      const answer = await ctx.probes.associations(ctx.input.guid.value!)
      if (!answer.ok) return answerFailure('the OAuth associations', answer)
      if (answer.value.length === 0)
        return fail(
          `storage mode ${mode} takes its credentials from a service-account OAuth integration, and none is associated`,
          'Associate one: mlflowctl deploy DIR --guid GUID --oauth-integration INTEGRATION_GUID (ask an admin for the GUID).',
        )
      return pass(`${answer.value.length} integration(s) associated`)
    },
  },
  {
    id: 'connect.vanity',
    category: 'connect',
    title: 'Vanity URL',
    needs: ['mlflow.health'],
    async run(ctx) {
      const answer = await ctx.probes.vanity(ctx.input.guid.value!)
      if (!answer.ok) return answerFailure('the vanity URL', answer)
      if (!answer.value) return pass('none set (the content URL works)')
      const url = new URL(answer.value.replace(/^\//, ''), serverUrl(ctx)).toString()
      const viaVanity = await ctx.probes.request(`${url.replace(/\/?$/, '/')}version`, {headers: keyHeader(ctx)})
      const viaGuid = await ctx.probes.request(`${ctx.facts.content!.contentUrl}version`, {headers: keyHeader(ctx)})
      if (viaVanity.status !== 200)
        return fail(
          `${answer.value} answers HTTP ${viaVanity.status}`,
          'Check the vanity path in Connect (Settings > Info); another item may own it.',
        )
      if (viaVanity.body !== viaGuid.body)
        return fail(
          `${answer.value} serves MLflow ${viaVanity.body.trim()}, but this content serves ${viaGuid.body.trim()}: it points at another content item`,
          'Move the vanity path to this content: mlflowctl deploy DIR --guid GUID --vanity PATH.',
        )
      return pass(`${answer.value} reaches this content`)
    },
  },
]
