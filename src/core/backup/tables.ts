/** Table order for a backup and a restore: parents before children (foreign-key levels). Pure. */

/**
 * A table or column name as a quoted SQL identifier (SQLite and PostgreSQL alike): a name is data, and a store may
 * hold a table called `odd"name`. Pure.
 */
export const quoteIdentifier = (name: string) => `"${name.replace(/"/g, '""')}"`

/**
 * Orders tables so that every table comes after the tables it references; ties keep name order so that
 * archives are reproducible. Self-references are ignored; a cycle (none in MLflow's schema) keeps the
 * remaining tables in name order at the end.
 */
export function foreignKeyOrder(tables: string[], references: Record<string, string[]>): string[] {
  const remaining = new Set([...tables].sort())
  const ordered: string[] = []
  while (remaining.size > 0) {
    const ready = [...remaining].filter((table) =>
      (references[table] ?? []).every((parent) => parent === table || !remaining.has(parent)),
    )
    const batch = ready.length > 0 ? ready : [...remaining]
    for (const table of batch) {
      ordered.push(table)
      remaining.delete(table)
    }
  }
  return ordered
}

/**
 * MLflow's tracking tables: every table in a database that MLflow 3.17.2 created (read from a real one),
 * which includes every earlier release's, plus those 3.18.0's migrations create (its skill registry hangs
 * off no older table). A unit test holds this list to every `creates` in the catalog. A shared database
 * can hold other applications' tables; a backup takes MLflow's only, and names what it left out.
 */
export const KNOWN_MLFLOW_TABLES = new Set([
  'alembic_version',
  'assessments',
  'budget_policies',
  'datasets',
  'endpoint_bindings',
  'endpoint_model_mappings',
  'endpoint_tags',
  'endpoints',
  'entity_associations',
  'evaluation_dataset_records',
  'evaluation_dataset_tags',
  'evaluation_datasets',
  'experiment_tags',
  'experiments',
  'guardrail_configs',
  'guardrails',
  'input_tags',
  'inputs',
  'issue_categories',
  'issues',
  'job_locks',
  'jobs',
  'label_schemas',
  'latest_metrics',
  'logged_model_metrics',
  'logged_model_params',
  'logged_model_tags',
  'logged_models',
  'mcp_access_endpoints',
  'mcp_server_aliases',
  'mcp_server_tags',
  'mcp_server_version_tags',
  'mcp_server_versions',
  'mcp_servers',
  'metrics',
  'model_definitions',
  'model_version_tags',
  'model_versions',
  'online_scoring_configs',
  'params',
  'registered_model_aliases',
  'registered_model_tags',
  'registered_models',
  'review_queue_items',
  'review_queue_label_schemas',
  'review_queue_users',
  'review_queues',
  'runs',
  'scheduler_leases',
  'scorer_versions',
  'scorers',
  'secrets',
  'skill_aliases',
  'skill_tags',
  'skill_version_tags',
  'skill_versions',
  'skills',
  'span_metrics',
  'spans',
  'sql_assessment_daily_rollups',
  'sql_span_cost_daily_rollups',
  'sql_trace_metric_daily_rollups',
  'sql_trace_rollup_rebuild_queue',
  'tags',
  'trace_info',
  'trace_metrics',
  'trace_request_metadata',
  'trace_tags',
  'webhook_events',
  'webhooks',
  'workspaces',
])

/**
 * MLflow's tables among a schema's: the known ones, plus any table that references one of them
 * (tables a newer MLflow added hang off experiments, runs, traces…). The rest is left out and named.
 */
export function selectMlflowTables(
  tables: string[],
  references: Record<string, string[]>,
): {taken: string[]; skipped: string[]} {
  const taken = new Set(tables.filter((table) => KNOWN_MLFLOW_TABLES.has(table)))
  for (let grew = true; grew;) {
    grew = false
    for (const table of tables) {
      if (!taken.has(table) && (references[table] ?? []).some((parent) => taken.has(parent))) {
        taken.add(table)
        grew = true
      }
    }
  }
  return {taken: tables.filter((table) => taken.has(table)), skipped: tables.filter((table) => !taken.has(table))}
}
