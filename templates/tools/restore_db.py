"""Loads a backup's tables into an empty database, run by `mlflowctl backup restore` in a managed venv with
real MLflow. Why Python: the target schema must be the one MLflow itself creates at the backup's revision
(its initial tables, then its own alembic chain up to that revision), on any engine SQLAlchemy speaks.

Usage: restore_db.py URL REVISION DB_DIR   (DB_DIR holds schema.json and <table>.jsonl from the archive)
Prints one JSON line {"tables": N, "rows": N}; on failure exits 3 with a message on stderr and leaves the
target as it was: an empty SQLite file is removed by the caller, created PostgreSQL tables are dropped.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

BATCH = 1000


def fail(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.exit(3)


def decode(value):
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"])
        if "$i" in value:
            return int(value["$i"])
        if "$f" in value:
            return float(value["$f"])
    return value


def converter(column):
    """SQLite stores booleans as 0/1; PostgreSQL wants real booleans."""
    if isinstance(column.type, sqlalchemy.Boolean):
        return lambda v: None if v is None else bool(v)
    return lambda v: v


def create_schema(engine, url: str, revision: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    config = _get_alembic_config(url)
    known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
    if revision not in known:
        import mlflow

        fail(f"The backup's schema revision {revision} is unknown to MLflow {mlflow.__version__}: restore it with a newer mlflowctl.")
    InitialBase.metadata.create_all(engine)
    command.upgrade(config, revision)


def insert_rows(conn, table, columns: list[str], rows) -> int:
    """The fastest bulk path each engine has, inside the caller's transaction: COPY FROM STDIN on
    PostgreSQL (psycopg 3), executemany on SQLite, SQLAlchemy's batched INSERT elsewhere (SQL Server)."""
    dialect = conn.engine.dialect.name
    raw = conn.connection.dbapi_connection
    quoted = ", ".join(f'"{c}"' for c in columns)
    count = 0
    if dialect == "postgresql" and hasattr(raw, "cursor") and hasattr(raw.cursor(), "copy"):
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    if dialect == "sqlite":
        sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join("?" for _ in columns)})'
        cursor = raw.cursor()
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 10 * BATCH:
                cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            count += len(batch)
        return count
    batch = []
    for row in rows:
        batch.append(dict(zip(columns, row)))
        if len(batch) >= BATCH:
            conn.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def load(engine, db_dir: Path) -> tuple[int, int]:
    schema = json.loads((db_dir / "schema.json").read_text())
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    total = 0
    tables = 0
    with engine.begin() as conn:
        # Migrations seed some rows (a default workspace, for instance); the backup holds every row of
        # every table, seeds included, so the seeds go first (children before parents).
        for spec in reversed(schema["tables"]):
            if spec["name"] != "alembic_version" and spec["name"] in metadata.tables:
                conn.execute(metadata.tables[spec["name"]].delete())
        for spec in schema["tables"]:
            name = spec["name"]
            if name == "alembic_version":
                continue  # set by the migrations to the backup's revision
            if name not in metadata.tables:
                fail(f"Table {name} from the backup does not exist in the target schema.")
            table = metadata.tables[name]
            source_columns = [c["name"] for c in spec["columns"]]
            # Generated columns (spans.duration_ns) are computed by the database: never inserted.
            usable = [c for c in source_columns if c in table.c and table.c[c].computed is None]
            positions = [source_columns.index(c) for c in usable]
            convert = [converter(table.c[c]) for c in usable]
            with open(db_dir / f"{name}.jsonl", encoding="utf-8") as lines:
                rows = ([fn(decode(row[pos])) for pos, fn in zip(positions, convert)] for row in map(json.loads, lines))
                total += insert_rows(conn, table, usable, rows)
            tables += 1
        if engine.dialect.name == "postgresql":
            # Explicit IDs leave sequences behind: move each to the column's maximum.
            for table in metadata.sorted_tables:
                for column in table.primary_key.columns:
                    sequence = conn.execute(sqlalchemy.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}).scalar()
                    if sequence:
                        conn.execute(sqlalchemy.text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, false)'), {"s": sequence})
    return tables, total


def main() -> None:
    url, revision, db_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    existing = [t for t in sqlalchemy.inspect(engine).get_table_names() if t != "alembic_version"]
    if existing:
        fail(f"The target database is not empty ({len(existing)} tables, e.g. {existing[0]}).")
    try:
        create_schema(engine, url, revision)
        tables, rows = load(engine, db_dir)
    except SystemExit:
        cleanup(engine)
        raise
    except Exception as exc:  # leave the target as it was: empty
        cleanup(engine)
        fail(f"Restore failed: {type(exc).__name__}: {exc}")
    print(json.dumps({"tables": tables, "rows": rows}))


def cleanup(engine) -> None:
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


if __name__ == "__main__":
    main()
