"""Running an older MLflow on a schema that newer migrations only added to (an instant rollback).

mlflowctl sets MLFLOWCTL_SCHEMA_AHEAD_ALLOWED to the exact revision it found additive from this MLflow's head (new
tables, nullable or defaulted columns, indexes). The extension then checks for itself, before MLflow starts, that
every table and column this MLflow's models use is there, and that no column it does not know would refuse its
INSERTs (NOT NULL without a default). Only then are MLflow's own start-up checks, which accept nothing but their
own head, told that this revision is fine.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy


def _models_metadata() -> Any:
    # Importing the model modules registers their tables on MLflow's declarative base.
    import mlflow.store.model_registry.dbmodels.models  # noqa: F401
    import mlflow.store.tracking.dbmodels.models  # noqa: F401
    from mlflow.store.db.base_sql_model import Base

    return Base.metadata


def schema_gaps(engine: sqlalchemy.engine.Engine) -> list[str]:
    """What keeps this MLflow from running on the database: a table or column its models use that is missing, or a
    column it does not know that would refuse the rows it inserts."""
    inspector = sqlalchemy.inspect(engine)
    existing = set(inspector.get_table_names())
    gaps: list[str] = []
    for table in _models_metadata().sorted_tables:
        if table.name not in existing:
            gaps.append(f"table {table.name} is missing")
            continue
        known = {column.name for column in table.columns}
        present = inspector.get_columns(table.name)
        names = {column["name"] for column in present}
        gaps.extend(f"column {table.name}.{name} is missing" for name in sorted(known - names))
        for column in present:
            if column["name"] in known or column.get("nullable", True) or column.get("default") is not None:
                continue
            if column.get("autoincrement") is True:
                continue
            gaps.append(f"column {table.name}.{column['name']} is NOT NULL without a default")
    return gaps


def tolerate_revision(revision: str) -> None:
    """Lets MLflow's stores open a database at `revision`, which its migration scripts do not know.

    The tracking store checks the revision against its head (`_verify_schema`), and in 2.x it takes a table set other
    than its own for an empty database and tries to migrate it (`_all_tables_exist`); 3.x's registry store imports
    the latter by name. Any other revision is checked as before.
    """
    import mlflow.store.db.utils as db_utils

    verify_schema, all_tables_exist = db_utils._verify_schema, db_utils._all_tables_exist

    def at_revision(engine: Any) -> bool:
        return db_utils._get_schema_version(engine) == revision

    def verify_or_accept(engine: Any) -> None:
        if not at_revision(engine):
            verify_schema(engine)

    def tables_or_accept(engine: Any) -> bool:
        return bool(all_tables_exist(engine)) or at_revision(engine)

    db_utils._verify_schema = verify_or_accept
    db_utils._all_tables_exist = tables_or_accept
    import mlflow.store.model_registry.sqlalchemy_store as registry_store

    if hasattr(registry_store, "_all_tables_exist"):
        registry_store._all_tables_exist = tables_or_accept  # pyright: ignore[reportAttributeAccessIssue]
