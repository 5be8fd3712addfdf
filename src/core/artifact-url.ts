/**
 * Artifact store URLs as MLflow writes them (MLFLOW_ARTIFACTS_DESTINATION): `s3://bucket/prefix`,
 * `wasbs://container@account.blob.core.windows.net/prefix` (also chinacloudapi.cn and usgovcloudapi.net, as
 * MLflow accepts), `gs://bucket/prefix`. Pure.
 */
import {UsageError} from '../errors.js'

export interface ArtifactLocation {
  scheme: 's3' | 'wasbs' | 'gs'
  bucket: string
  /** Without leading or trailing slashes; '' for the bucket root. */
  prefix: string
  /** wasbs only */
  account?: string
  /** wasbs only: blob.core.windows.net and friends */
  suffix?: string
  display: string
}

const WASBS_HOST = /^([^@]+)@([a-z0-9]+)\.(blob\.core\.(?:windows\.net|chinacloudapi\.cn|usgovcloudapi\.net))$/

/** @throws UsageError INVALID_ARTIFACT_URL */
export function parseArtifactUrl(raw: string): ArtifactLocation {
  const match = /^(s3|wasbs|gs):\/\/([^/]+)\/?(.*)$/.exec(raw.trim())
  const invalid = (why: string) =>
    new UsageError('INVALID_ARTIFACT_URL', `Artifact store URL ${raw}: ${why}.`, {
      suggestions: [
        'Use s3://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix or gs://bucket/prefix.',
      ],
    })
  if (!match) throw invalid('not an s3://, wasbs:// or gs:// URL')
  const [, scheme, host, path] = match
  const prefix = path.replace(/^\/+|\/+$/g, '')
  if (scheme !== 'wasbs') return {scheme: scheme as 's3' | 'gs', bucket: host, prefix, display: raw}
  const wasbs = WASBS_HOST.exec(host)
  if (!wasbs) throw invalid('wasbs needs container@account.blob.core.windows.net')
  return {scheme: 'wasbs', bucket: wasbs[1], account: wasbs[2], suffix: wasbs[3], prefix, display: raw}
}

export const joinKey = (location: ArtifactLocation, name: string) =>
  location.prefix ? `${location.prefix}/${name}` : name

/** Whether a location is an object store (s3://, wasbs://, gs://) rather than a local directory. Pure. */
export const isObjectStoreUrl = (raw: string) => /^(s3|wasbs|gs):\/\//.test(raw.trim())
