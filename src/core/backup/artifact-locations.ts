/**
 * Restores that move a store: MLflow keeps absolute artifact locations in its rows, so a database restored beside
 * its artifacts in a new place would still point at the old one (and after a disaster nothing is there). The
 * columns below are rewritten from the backup's artifact root to the new root; proxied `mlflow-artifacts:/` URIs
 * are relative to whatever store the server serves and need no rewrite. Pure.
 */

/** A column that holds an artifact location; `onlyWhere` limits it to key/value rows with that key. */
export interface LocationColumn {
  table: string
  column: string
  onlyWhere?: {column: string; equals: string}
}

/**
 * Every column of MLflow's schema (2.x to 3.17) that stores an absolute artifact location (mlflow/store/tracking/
 * dbmodels/models.py, mlflow/store/model_registry/dbmodels/models.py; the trace tag is MLFLOW_ARTIFACT_LOCATION in
 * mlflow/utils/mlflow_tags.py).
 */
export const ARTIFACT_LOCATION_COLUMNS: readonly LocationColumn[] = [
  {table: 'experiments', column: 'artifact_location'},
  {table: 'runs', column: 'artifact_uri'},
  {table: 'logged_models', column: 'artifact_location'},
  {table: 'model_versions', column: 'source'},
  {table: 'model_versions', column: 'storage_location'},
  {table: 'trace_tags', column: 'value', onlyWhere: {column: 'key', equals: 'mlflow.artifactLocation'}},
]

const isUrl = (root: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(root)

/** The spellings a root can have in rows: a local directory appears as a path or as a file: URI. */
function spellings(root: string): Array<{prefix: string; form: 'path' | 'file3' | 'file1' | 'url'}> {
  const trimmed = root.replace(/\/+$/, '')
  if (trimmed.startsWith('file://')) return spellings(decodeURIComponent(trimmed.slice('file://'.length)))
  if (isUrl(trimmed)) return [{prefix: trimmed, form: 'url'}]
  return [
    {prefix: `file://${trimmed}`, form: 'file3'},
    {prefix: `file:${trimmed}`, form: 'file1'},
    {prefix: trimmed, form: 'path'},
  ]
}

/**
 * A function that returns the value with `from` replaced by `to` when the value lies under `from` (in any of its
 * spellings), else undefined. A local target keeps the spelling it replaces (path, file:///, file:/).
 */
export function locationRewriter(from: string, to: string): (value: string) => string | undefined {
  const sources = spellings(from)
  const target = to.replace(/\/+$/, '')
  const targetLocal = !isUrl(target) || target.startsWith('file://')
  const targetPath = target.startsWith('file://') ? decodeURIComponent(target.slice('file://'.length)) : target
  const spell = (form: string) =>
    !targetLocal
      ? target
      : form === 'file3'
        ? `file://${targetPath}`
        : form === 'file1'
          ? `file:${targetPath}`
          : targetPath
  return (value) => {
    for (const {prefix, form} of sources) {
      if (value === prefix || value.startsWith(`${prefix}/`))
        return `${spell(form === 'url' ? 'path' : form)}${value.slice(prefix.length)}`
    }
    return undefined
  }
}

/** Whether the rewrite would change nothing: the same root in the same place. */
export function sameRoot(from: string, to: string): boolean {
  return spellings(from)[spellings(from).length - 1].prefix === spellings(to)[spellings(to).length - 1].prefix
}

/** What a restore did to artifact locations, for its result: "table.column" → rows changed. */
export interface LocationRewrite {
  from: string
  to: string
  rewritten: Record<string, number>
  total: number
}

/** Where a table's location columns sit in its rows (a table file's column order); empty when it has none. Pure. */
export function locationPositions(table: {
  name: string
  columns: Array<{name: string}>
}): Array<{key: string; at: number; where?: {at: number; equals: string}}> {
  const index = (name: string) => table.columns.findIndex((column) => column.name === name)
  return ARTIFACT_LOCATION_COLUMNS.filter((column) => column.table === table.name)
    .map(({column, onlyWhere}) => ({
      key: `${table.name}.${column}`,
      at: index(column),
      where: onlyWhere ? {at: index(onlyWhere.column), equals: onlyWhere.equals} : undefined,
    }))
    .filter(({at, where}) => at >= 0 && (!where || where.at >= 0))
}
