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
import hashlib
import json
import os
import sys
import tempfile
import time

import sqlalchemy
from sqlalchemy.pool import NullPool


# The extension's key (mlflowctl_extension/migrations.py): a deployment starting meanwhile waits for us.
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"mlflowctl-schema-migration").digest()[:8], "big") >> 1


@contextlib.contextmanager
def migration_lock(engine):
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            conn.commit()


def revision(engine) -> str | None:
    if "alembic_version" not in sqlalchemy.inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        row = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


def describe(engine) -> dict:
    inspector = sqlalchemy.inspect(engine)
    tables = {}
    for table in sorted(inspector.get_table_names()):
        columns = {c["name"]: {"type": str(c["type"]).split("(")[0].upper(), "nullable": bool(c["nullable"])} for c in inspector.get_columns(table)}
        indexes = sorted(",".join(i["column_names"] or []) + (" unique" if i.get("unique") else "") for i in inspector.get_indexes(table))
        pk = ",".join(inspector.get_pk_constraint(table).get("constrained_columns") or [])
        fks = sorted(f"{','.join(f['constrained_columns'])}->{f['referred_table']}({','.join(f['referred_columns'])})" for f in inspector.get_foreign_keys(table))
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
        sys.stderr.write(f"MLflow {mlflow.__version__} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n")
        sys.exit(3)
    seconds = round(time.monotonic() - started, 3)
    out = describe(engine) if mode == "schema" else {"revision": revision(engine)}
    print(json.dumps({"mlflowVersion": mlflow.__version__, "seconds": seconds, **out}))
    engine.dispose()


if __name__ == "__main__":
    main()
