"""Loads a backup's tables into an empty database, run by `mlflowctl backup restore` in a managed venv with
real MLflow. Why Python: the target schema must be the one MLflow itself creates at the backup's revision
(its initial tables, then its own alembic chain up to that revision), on any engine SQLAlchemy speaks.

Usage: restore_db.py URL REVISION DB_DIR [REPLACE_FILE]
  DB_DIR holds schema.json and <table>.jsonl from the archive. REPLACE_FILE (--force, after a safety backup) is a
  JSON list of MLflow's table names that the swap may replace; other tables are never touched. URL may be "-",
  with the URL in MLFLOWCTL_RESTORE_URL (so that a password does not show in the process list).
Prints one JSON line {"tables": N, "rows": N}; on failure exits 3 with a message on stderr and leaves the
target as it was: an empty SQLite file is removed by the caller, created PostgreSQL tables are dropped.
With MLFLOWCTL_RESTORE_GATE=1 (PostgreSQL), the swap waits for the caller: "READY" on stdout, then "COMMIT" on
stdin commits it (anything else, or the caller gone, aborts) and "COMMITTED" follows. MLFLOWCTL_RESTORE_MARK is
written as the comment of alembic_version in the same transaction, so a caller killed around the commit can tell
afterwards whether it happened. The process dies with its caller (parent_guard).
"""
from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

BATCH = 1000


def fail(message: str, code: int = 3) -> None:
    """Exit 3: the target is as it was."""
    sys.stderr.write(f"{message}\n")
    sys.exit(code)


def reason(exc: BaseException) -> str:
    """The exception's own message, first line: for a driver error wrapped by SQLAlchemy, the driver's
    ("unable to open database file"), not the statement, its parameters or the "Background on this error" link."""
    orig = getattr(exc, "orig", None)
    inner = orig if isinstance(orig, BaseException) else exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else ''}".rstrip(": ")


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


def check_revision(url: str, revision: str) -> None:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    known = {rev.revision for rev in ScriptDirectory.from_config(_get_alembic_config(url)).walk_revisions()}
    if revision not in known:
        import mlflow

        fail(f"The backup's schema revision {revision} is unknown to MLflow {mlflow.__version__}: restore it with a newer mlflowctl.")


def create_schema(engine, url: str, revision: str) -> None:
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    InitialBase.metadata.create_all(engine)
    command.upgrade(_get_alembic_config(url), revision)


def copy_text(conn, table, columns: list[str], path: Path) -> int:
    """Format 2 of a PostgreSQL source into PostgreSQL: the table's COPY text, as the source server wrote it, streamed
    to COPY FROM STDIN in 1 MiB blocks (psycopg 3): no row is decoded here. Returns the rows (lines)."""
    raw = conn.connection.dbapi_connection
    quoted = ", ".join(f'"{c}"' for c in columns)
    count = 0
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy, open(path, "rb") as source:
        while block := source.read(1 << 20):
            copy.write(block)
            count += block.count(b"\n")
    return count


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


def defer_indexes(conn) -> list[str]:
    """Drops the current schema's foreign keys, primary keys, unique constraints and indexes, and returns the
    statements that recreate them (keys and indexes first, foreign keys last). Runs inside the load's
    transaction: a failure rolls the drops back too."""
    rows = conn.execute(sqlalchemy.text(
        "SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype, pg_get_constraintdef(c.oid) AS definition "
        "FROM pg_constraint c WHERE c.connamespace = current_schema()::regnamespace AND c.contype IN ('f', 'p', 'u')"
    )).fetchall()
    indexes = conn.execute(sqlalchemy.text(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)"
    )).fetchall()
    q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731
    foreign = [r for r in rows if r.contype == "f"]
    keys = [r for r in rows if r.contype != "f"]
    for r in foreign + keys:
        conn.execute(sqlalchemy.text(f"ALTER TABLE {r.tbl} DROP CONSTRAINT {q(r.conname)}"))
    for name, _ in indexes:
        conn.execute(sqlalchemy.text(f"DROP INDEX {q(name)}"))
    conn.execute(sqlalchemy.text("SET LOCAL maintenance_work_mem = '256MB'"))
    return [f"ALTER TABLE {r.tbl} ADD CONSTRAINT {q(r.conname)} {r.definition}" for r in keys] + [definition for _, definition in indexes] + [
        f"ALTER TABLE {r.tbl} ADD CONSTRAINT {q(r.conname)} {r.definition}" for r in foreign
    ]


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
        # Like pg_restore: indexes and constraints are built once after the data instead of row by row.
        deferred = defer_indexes(conn) if engine.dialect.name == "postgresql" else []
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
            copy_file = db_dir / f"{name}.copy"
            if copy_file.exists() and engine.dialect.name == "postgresql" and usable == source_columns:
                total += copy_text(conn, table, usable, copy_file)
                tables += 1
                continue
            positions = [source_columns.index(c) for c in usable]
            convert = [converter(table.c[c]) for c in usable]
            with open(db_dir / f"{name}.jsonl", encoding="utf-8") as lines:
                rows = ([fn(decode(row[pos])) for pos, fn in zip(positions, convert)] for row in map(json.loads, lines))
                total += insert_rows(conn, table, usable, rows)
            tables += 1
        for statement in deferred:
            conn.execute(sqlalchemy.text(statement))
        if engine.dialect.name == "postgresql":
            # Explicit IDs leave sequences behind: move each to the column's maximum.
            for table in metadata.sorted_tables:
                for column in table.primary_key.columns:
                    sequence = conn.execute(sqlalchemy.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}).scalar()
                    if sequence:
                        conn.execute(sqlalchemy.text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, false)'), {"s": sequence})
    return tables, total


RESTORE_LOCK = 0x6D6C666C6F77  # pg_advisory_lock key: one PostgreSQL restore at a time per database
STAGING_PREFIX = "mlflowctl_restore_"


def restore_postgres(url: str, revision: str, db_dir: Path, replace: set[str] | None) -> tuple[int, int]:
    """Builds the schema and loads it in a staging schema of the same database, then swaps it in with one
    transaction: MLflow's old tables dropped, the new ones moved (ALTER ... SET SCHEMA). A failure or a kill at
    any point before that commit leaves the target exactly as it was; a leftover staging schema is dropped by
    the next restore. Another application's tables are never touched (a foreign key from one of them to an
    MLflow table makes the swap fail, and nothing changes)."""
    from sqlalchemy.engine import make_url

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    holder = engine.connect()
    try:
        if not holder.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": RESTORE_LOCK}).scalar():
            fail("Another restore into this database is running.")
        target = holder.execute(sqlalchemy.text("SELECT current_schema()")).scalar()
        backup_tables = {t["name"] for t in json.loads((db_dir / "schema.json").read_text())["tables"]}
        existing = set(sqlalchemy.inspect(holder).get_table_names(schema=target))
        clashing = sorted((existing & backup_tables) - {"alembic_version"})
        if clashing and replace is None:
            fail(f"The target database is not empty ({len(clashing)} MLflow tables, e.g. {clashing[0]}).")
        for (stale,) in holder.execute(sqlalchemy.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": STAGING_PREFIX + "%"}).fetchall():
            holder.execute(sqlalchemy.text(f'DROP SCHEMA "{stale}" CASCADE'))
        staging = f"{STAGING_PREFIX}{os.getpid()}"
        holder.execute(sqlalchemy.text(f'CREATE SCHEMA "{staging}"'))
        holder.commit()
        staging_url = make_url(url).update_query_dict({"options": f"-csearch_path={staging}"}).render_as_string(hide_password=False)
        staging_engine = sqlalchemy.create_engine(staging_url, poolclass=NullPool)
        try:
            create_schema(staging_engine, staging_url, revision)
            tables, rows = load(staging_engine, db_dir)
        except SystemExit:
            raise
        except Exception as exc:
            fail(f"Restore failed: {reason(exc)}")
        wait_for_commit()
        try:
            swap_in(holder, staging, target, replace or set())
        except Exception as exc:
            holder.rollback()
            fail(f"Could not swap the restored tables in; the target is unchanged: {reason(exc)}")
        return tables, rows
    finally:
        try:
            holder.rollback()
            for (stale,) in holder.execute(sqlalchemy.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": STAGING_PREFIX + "%"}).fetchall():
                holder.execute(sqlalchemy.text(f'DROP SCHEMA "{stale}" CASCADE'))
            holder.commit()
        finally:
            holder.close()


def wait_for_commit() -> None:
    """The caller's go-ahead (it swaps the artifacts in first): anything but COMMIT leaves the target unchanged."""
    if os.environ.get("MLFLOWCTL_RESTORE_GATE") != "1":
        return
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "COMMIT":
        fail("The restore was cancelled before it committed; the target is unchanged.")


def swap_in(conn, staging: str, target: str, mlflow_tables: set[str]) -> None:
    q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731
    inspector = sqlalchemy.inspect(conn)
    new_tables = inspector.get_table_names(schema=staging)
    # Old MLflow tables go, children first (a foreign table that references one makes this fail: nothing changes).
    metadata = sqlalchemy.MetaData(schema=target)
    metadata.reflect(conn, only=[t for t in inspector.get_table_names(schema=target) if t in mlflow_tables or t in new_tables])
    for table in reversed(metadata.sorted_tables):
        conn.execute(sqlalchemy.text(f"DROP TABLE {q(target)}.{q(table.name)}"))
    for table in new_tables:
        conn.execute(sqlalchemy.text(f"ALTER TABLE {q(staging)}.{q(table)} SET SCHEMA {q(target)}"))
    # Trigger functions (secrets' AAD guard) and any standalone sequences follow their tables.
    functions = conn.execute(sqlalchemy.text("SELECT p.oid::regprocedure::text, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s"), {"s": staging}).fetchall()
    for signature, name in functions:
        arguments = signature[signature.index("("):]
        conn.execute(sqlalchemy.text(f"DROP FUNCTION IF EXISTS {q(target)}.{q(name)}{arguments}"))
        conn.execute(sqlalchemy.text(f"ALTER FUNCTION {signature} SET SCHEMA {q(target)}"))
    for (sequence,) in conn.execute(sqlalchemy.text("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'S'"), {"s": staging}).fetchall():
        conn.execute(sqlalchemy.text(f"DROP SEQUENCE IF EXISTS {q(target)}.{q(sequence)}"))
        conn.execute(sqlalchemy.text(f"ALTER SEQUENCE {q(staging)}.{q(sequence)} SET SCHEMA {q(target)}"))
    conn.execute(sqlalchemy.text(f"DROP SCHEMA {q(staging)}"))  # empty now; RESTRICT: fails rather than lose anything
    mark = os.environ.get("MLFLOWCTL_RESTORE_MARK", "")
    if mark:
        literal = "'" + mark.replace("'", "''") + "'"
        conn.execute(sqlalchemy.text(f"COMMENT ON TABLE {q(target)}.alembic_version IS {literal}"))
    conn.commit()
    if os.environ.get("MLFLOWCTL_RESTORE_GATE") == "1":
        sys.stdout.write("COMMITTED\n")
        sys.stdout.flush()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from parent_guard import die_with_parent

    die_with_parent()
    url, revision, db_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    url = os.environ.get("MLFLOWCTL_RESTORE_URL") or url  # "-": the URL comes from the environment (not visible in ps)
    replace = set(json.loads(Path(sys.argv[4]).read_text())) if len(sys.argv) > 4 else None
    check_revision(url, revision)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "postgresql":
        tables, rows = restore_postgres(url, revision, db_dir, replace)
        print(json.dumps({"tables": tables, "rows": rows}))
        return
    existing = set(sqlalchemy.inspect(engine).get_table_names())
    backup_tables = {t["name"] for t in json.loads((db_dir / "schema.json").read_text())["tables"]}
    # Another application's tables may share the database: only tables this restore creates count, and only
    # those are dropped again on failure.
    clashing = sorted((existing & backup_tables) - {"alembic_version"})
    if clashing:
        fail(f"The target database is not empty ({len(clashing)} MLflow tables, e.g. {clashing[0]}).")
    try:
        create_schema(engine, url, revision)
        tables, rows = load(engine, db_dir)
    except BaseException as exc:  # KeyboardInterrupt included: leave the target as it was
        cleanup(engine, existing)
        if isinstance(exc, SystemExit):
            raise
        fail(f"Restore failed: {reason(exc)}")
    print(json.dumps({"tables": tables, "rows": rows}))


def cleanup(engine, keep: set[str]) -> None:
    """Drops every table the failed restore made (those that were not there before)."""
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine, tables=[t for t in metadata.sorted_tables if t.name not in keep])


if __name__ == "__main__":
    try:
        main()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # a failure outside the guarded steps (connecting, reading the backup): one line
        fail(f"Restore failed: {reason(exc)}")
