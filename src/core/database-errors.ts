/** Turns a database driver's failure into a classified mlflowctl error with the fix an operator needs (an RDS IAM
 * token or an Entra token refused, expired or for the wrong user). Pure. */
import {AuthError, ExternalError, type MlflowctlError} from '../errors.js'
import type {DatabaseTarget} from './database-url.js'
import {redact} from './redact.js'

const AUTH_FAILURE =
  /PAM authentication failed|password authentication failed|Login failed|AAD_AUTH|authentication failed/i

export function databaseErrorHints(target: DatabaseTarget, message: string): string[] {
  const hints: string[] = []
  if (/PAM authentication failed/i.test(message) && target.auth === 'rds-iam') {
    hints.push(
      "RDS refused the IAM token. Check: IAM database authentication is enabled on the instance; the user has `GRANT rds_iam`; the IAM policy allows rds-db:connect on this DB user; the region is the instance's; the AWS credentials have not expired (`aws sts get-caller-identity`).",
    )
  }
  if (/password authentication failed|Login failed/i.test(message) && target.auth === 'entra') {
    hints.push(
      'The Entra principal must exist in the database under exactly this user name (pgaadauth_create_principal / CREATE USER … FROM EXTERNAL PROVIDER).',
    )
  }
  if (/password authentication failed|Login failed for user/i.test(message) && target.auth === 'password') {
    hints.push(
      `The server refused user ${target.user ?? '(none)'} with this password. Check the user name and the password (percent-encode @, / and : in the URL), and that pg_hba.conf (or the server's firewall rules) allows this user from this host with password authentication.`,
    )
  }
  if (/rejects connection .*SSL off|no encryption/i.test(message))
    hints.push('The server requires TLS: set sslmode=verify-full (token logins always need TLS).')
  if (
    /self[- ]signed|unable to get local issuer|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN/i.test(message)
  ) {
    hints.push(
      `Trust the server's CA: add sslrootcert=/path/to/ca.pem to the URL${target.auth === 'rds-iam' ? ' (RDS: global-bundle.pem from truststore.pki.rds.amazonaws.com)' : ''}.`,
    )
  }
  if (
    /ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|timeout expired|Connection terminated due to connection timeout/i.test(message)
  ) {
    hints.push(
      `Nothing answered at ${target.host ?? target.instance}:${target.port ?? ''}: check the host, port, security groups or firewall rules, and that this machine may reach the database.`,
    )
  }
  if (/ENOTFOUND|EAI_AGAIN/i.test(message))
    hints.push(`The host name ${target.host} does not resolve from this machine.`)
  if (/database ".*" does not exist/i.test(message))
    hints.push('Create the database first, or fix its name in the URL.')
  if (
    /Could not load the default credentials|CredentialsProviderError|CredentialUnavailableError|Could not load credentials/i.test(
      message,
    )
  ) {
    hints.push(
      'No cloud credentials were found on this machine: configure the AWS/Azure/Google SDK (profile, environment, instance identity).',
    )
  }
  return hints
}

export function classifyDatabaseError(target: DatabaseTarget, error: unknown): MlflowctlError {
  const raw = error instanceof Error ? error.message : String(error)
  const message = redact(raw, [target.password])
  const suggestions = databaseErrorHints(target, message)
  const text = `Cannot connect to ${target.display}: ${message}`
  return AUTH_FAILURE.test(message)
    ? new AuthError('DATABASE_AUTH_FAILED', text, {suggestions})
    : new ExternalError('DATABASE_UNREACHABLE', text, {suggestions})
}
