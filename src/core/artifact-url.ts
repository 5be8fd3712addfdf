/**
 * Artifact store URLs as MLflow writes them (MLFLOW_ARTIFACTS_DESTINATION): `s3://bucket/prefix`,
 * `wasbs://container@account.blob.core.windows.net/prefix` (also chinacloudapi.cn and usgovcloudapi.net, as
 * MLflow accepts), `gs://bucket/prefix`. Pure.
 */
import {UsageError} from '../errors.js'

/** The object stores mlflowctl reads and writes; anything else is a local directory. The one list of schemes. */
export const OBJECT_STORE_SCHEMES = ['s3', 'wasbs', 'gs'] as const
export type ObjectStoreScheme = (typeof OBJECT_STORE_SCHEMES)[number]

/** The scheme of `location` when it is one of `schemes` (scheme://…), else undefined (a directory). Pure. */
export function storeScheme<S extends string>(location: string, schemes: readonly S[]): S | undefined {
  const match = /^([a-z][a-z0-9+.-]*):\/\//.exec(location.trim())
  return match && (schemes as readonly string[]).includes(match[1]) ? (match[1] as S) : undefined
}

export interface ArtifactLocation {
  scheme: ObjectStoreScheme
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
  const scheme = storeScheme(raw, OBJECT_STORE_SCHEMES)
  const match = scheme && /^[^:]+:\/\/([^/]+)\/?(.*)$/.exec(raw.trim())
  const invalid = (why: string) =>
    new UsageError('INVALID_ARTIFACT_URL', `Artifact store URL ${raw}: ${why}.`, {
      suggestions: [
        'Use s3://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix or gs://bucket/prefix.',
      ],
    })
  if (!match) throw invalid('not an s3://, wasbs:// or gs:// URL')
  const [, host, path] = match
  const prefix = path.replace(/^\/+|\/+$/g, '')
  if (scheme !== 'wasbs') return {scheme, bucket: host, prefix, display: raw}
  const wasbs = WASBS_HOST.exec(host)
  if (!wasbs) throw invalid('wasbs needs container@account.blob.core.windows.net')
  return {scheme: 'wasbs', bucket: wasbs[1], account: wasbs[2], suffix: wasbs[3], prefix, display: raw}
}

export const joinKey = (location: ArtifactLocation, name: string) =>
  location.prefix ? `${location.prefix}/${name}` : name

/** Whether a location is an object store (s3://, wasbs://, gs://) rather than a local directory. Pure. */
export const isObjectStoreUrl = (raw: string) => storeScheme(raw, OBJECT_STORE_SCHEMES) !== undefined
