"""Runs the target MLflow's own schema upgrade, or describes a schema, for `mlflowctl db migrate`. Runs in a
managed venv with the target MLflow installed, so what it does is exactly what that release does.

Usage: migrate_db.py upgrade|init|schema
  The database URL comes from MLFLOWCTL_MIGRATE_URL (never argv: it may hold a password).
  upgrade: mlflow.store.db.utils._upgrade_db, the function behind `mlflow db upgrade`.
  init:    a fresh database at the head, as the tracking server creates it on an empty database.
  schema:  tables, columns, indexes, keys, as SQLAlchemy reflects them (normalised for comparison).
Prints one JSON line. Exit 3 with the reason on stderr when MLflow fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

# The extension's own helpers (templates/extension), not copies: the same advisory lock key, so that a
# deployment starting meanwhile waits for us, and the same reading of alembic_version.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extension"))
from mlflowctl_extension.migrations import migration_lock as extension_migration_lock  # noqa: E402
from mlflowctl_extension.migrations import read_revision as revision  # noqa: E402


def migration_lock(engine):
    # A SQLite file has no server to hold a lock: the extension's SQLite lock lives in its data directory,
    # which a database file named on the command line does not have.
    if engine.dialect.name == "sqlite":
        return contextlib.nullcontext()
    return extension_migration_lock(engine, None)


def describe(engine) -> dict:
    inspector = sqlalchemy.inspect(engine)
    tables = {}
    for table in sorted(inspector.get_table_names()):
        columns = {
            c["name"]: {"type": str(c["type"]).split("(")[0].upper(), "nullable": bool(c["nullable"])}
            for c in inspector.get_columns(table)
        }
        indexes = sorted(
            ",".join(i["column_names"] or []) + (" unique" if i.get("unique") else "")
            for i in inspector.get_indexes(table)
        )
        pk = ",".join(inspector.get_pk_constraint(table).get("constrained_columns") or [])
        fks = sorted(
            f"{','.join(f['constrained_columns'])}->{f['referred_table']}({','.join(f['referred_columns'])})"
            for f in inspector.get_foreign_keys(table)
        )
        tables[table] = {"columns": columns, "indexes": indexes, "primaryKey": pk, "foreignKeys": fks}
    return {"revision": revision(engine), "tables": tables}


def main() -> None:
    mode = sys.argv[1]
    url = os.environ["MLFLOWCTL_MIGRATE_URL"]
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    import mlflow
    from mlflow.store.db import utils as db_utils

    started = time.monotonic()
    try:
        if mode == "upgrade":
            with migration_lock(engine):
                db_utils._upgrade_db(engine)
        elif mode == "init":
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            with tempfile.TemporaryDirectory() as artifacts:
                SqlAlchemyStore(url, artifacts)
        elif mode != "schema":
            raise SystemExit(f"unknown mode {mode}")
    except Exception as exc:  # the migration's own error, first line only (SQLAlchemy appends the statement)
        sys.stderr.write(
            f"MLflow {mlflow.__version__} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
        )
        sys.exit(3)
    seconds = round(time.monotonic() - started, 3)
    out = describe(engine) if mode == "schema" else {"revision": revision(engine)}
    print(json.dumps({"mlflowVersion": mlflow.__version__, "seconds": seconds, **out}))
    engine.dispose()


if __name__ == "__main__":
    main()
