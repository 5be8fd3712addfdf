"""Loads a backup's tables into an empty database, run by `mlflowctl backup restore` in a managed venv with
real MLflow. Why Python: the target schema must be the one MLflow itself creates at the backup's revision
(its initial tables, then its own alembic chain up to that revision), on any engine SQLAlchemy speaks.

Usage: restore_db.py URL REVISION DB_DIR [REPLACE_FILE]
  DB_DIR holds (or will hold: the caller starts this while it still reads the archive) schema.json and one table
  file per table, <table>.jsonl or <table>.copy. REPLACE_FILE (--force, after a safety backup) is a JSON list of
  MLflow's table names that the swap may replace; other tables are never touched. URL may be "-", with the URL in
  MLFLOWCTL_RESTORE_URL (so that a password does not show in the process list). MLFLOWCTL_RESTORE_TABLES: a JSON
  list of the backup's tables (from its manifest).

It works in phases, so that the caller can read the archive while MLflow builds the schema, and load the rows
itself where that is faster (COPY from Node, better-sqlite3):
  1. creates the schema (PostgreSQL: in a staging schema of the same database), removes the rows the migrations
     seeded, drops keys and indexes (PostgreSQL), then prints  PREPARED {"schema": STAGING or null}
  2. reads one line: LOAD (it loads the table files of DB_DIR itself) or SKIP (the caller has loaded the rows);
     anything else, or the caller gone, aborts
  3. rebuilds keys and indexes and moves sequences past the restored IDs, then prints  READY {"tables": N, "rows": N}
  4. PostgreSQL with MLFLOWCTL_RESTORE_GATE=1: waits for COMMIT (anything else aborts), commits the swap in one
     transaction and prints COMMITTED. MLFLOWCTL_RESTORE_MARK is written as the comment of alembic_version in that
     transaction, so a caller killed around the commit can tell afterwards whether it happened.
On failure it exits 3 with a one-line message on stderr and leaves the target as it was: created SQLite tables are
dropped, the PostgreSQL staging schema is dropped. The process dies with its caller (parent_guard).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import sqlalchemy
from sqlalchemy.pool import NullPool

BATCH = 1000


def fail(message: str, code: int = 3) -> NoReturn:
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

        fail(
            f"The backup's schema revision {revision} is unknown to MLflow {mlflow.__version__}: restore it with a newer mlflowctl."
        )


def create_schema(engine, url: str, revision: str) -> None:
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    InitialBase.metadata.create_all(engine)
    command.upgrade(_get_alembic_config(url), revision)


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


def defer_indexes(conn) -> dict[str, list]:
    """Drops the current schema's foreign keys, primary keys, unique constraints and indexes, and returns the
    statements that rebuild them: "indexes" (every index, those behind keys included, built concurrently), then
    "attach" (each key adopts its index: instant) and "foreign" (foreign keys, checked against the data). The drops
    commit with the preparation: the staging schema is this restore's own, and the caller's COPY connections must
    not wait on them."""
    q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731
    rows = conn.execute(
        sqlalchemy.text(
            "SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype, pg_get_constraintdef(c.oid) AS definition, "
            "pg_get_indexdef(c.conindid) AS indexdef, c.condeferrable, c.condeferred "
            "FROM pg_constraint c WHERE c.connamespace = current_schema()::regnamespace AND c.contype IN ('f', 'p', 'u')"
        )
    ).fetchall()
    indexes = conn.execute(
        sqlalchemy.text(
            "SELECT i.indexname, i.indexdef, (quote_ident(i.schemaname) || '.' || quote_ident(i.tablename)) AS tbl "
            "FROM pg_indexes i WHERE i.schemaname = current_schema() AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)"
        )
    ).fetchall()
    foreign = [r for r in rows if r.contype == "f"]
    keys = [r for r in rows if r.contype != "f"]
    for r in foreign + keys:
        conn.execute(sqlalchemy.text(f"ALTER TABLE {r.tbl} DROP CONSTRAINT {q(r.conname)}"))
    for r in indexes:
        conn.execute(sqlalchemy.text(f"DROP INDEX {q(r.indexname)}"))
    kind = {"p": "PRIMARY KEY", "u": "UNIQUE"}
    return {
        "indexes": [(r.tbl, r.indexdef) for r in keys + indexes],
        "attach": [
            f"ALTER TABLE {r.tbl} ADD CONSTRAINT {q(r.conname)} {kind[r.contype]} USING INDEX {q(r.conname)}"
            + (" DEFERRABLE" if r.condeferrable else "")
            + (" INITIALLY DEFERRED" if r.condeferred else "")
            for r in keys
        ],
        "foreign": [f"ALTER TABLE {r.tbl} ADD CONSTRAINT {q(r.conname)} {r.definition}" for r in foreign],
    }


def prepare(engine, url: str, revision: str, backup_tables: set[str] | None) -> dict[str, list]:
    """Phase 1: MLflow's schema at the revision, without the rows its migrations seed (a default workspace, for
    instance: the backup holds every row of every table, seeds included) and, on PostgreSQL, without keys and
    indexes, which are built once after the data, as pg_restore does. Returns the statements that rebuild them."""
    create_schema(engine, url, revision)
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):  # children before parents
            if table.name != "alembic_version" and (backup_tables is None or table.name in backup_tables):
                conn.execute(table.delete())
        return defer_indexes(conn) if engine.dialect.name == "postgresql" else {}


def load(engine, db_dir: Path) -> tuple[int, int]:
    """Phase 2 (LOAD): format 1's JSON lines in DB_DIR, in one transaction (the caller loads format 2 itself)."""
    schema = json.loads((db_dir / "schema.json").read_text())
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    total = 0
    tables = 0
    with engine.begin() as conn:
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
    return tables, total


INDEX_BUILDERS = 2  # connections that build indexes at once: the largest tables' sorts overlap (2-core machine)


def build_indexes(engine, indexes: list[tuple[str, str]]) -> None:
    """Every index (table, CREATE INDEX statement) on INDEX_BUILDERS connections at once, largest table first.
    CREATE INDEX takes a SHARE lock, which other index builds share (ADD PRIMARY KEY would lock the table)."""
    from concurrent.futures import ThreadPoolExecutor

    with engine.connect() as conn:
        size = {
            table: conn.execute(sqlalchemy.text("SELECT pg_relation_size(:t)"), {"t": table}).scalar()
            for table in {t for t, _ in indexes}
        }
    pending = [statement for _, statement in sorted(indexes, key=lambda index: -size[index[0]])]

    def builder() -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("SET maintenance_work_mem = '256MB'"))
            while pending:
                try:
                    statement = pending.pop(0)
                except IndexError:
                    return
                conn.execute(sqlalchemy.text(statement))

    with ThreadPoolExecutor(INDEX_BUILDERS) as pool:
        for future in [pool.submit(builder) for _ in range(INDEX_BUILDERS)]:
            future.result()


def finish(engine, deferred: dict[str, list]) -> None:
    """Phase 3: indexes (concurrently), keys attached to them, foreign keys, and each sequence moved past the
    restored IDs (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        return
    build_indexes(engine, deferred["indexes"])
    with engine.begin() as conn:
        for statement in deferred["attach"] + deferred["foreign"]:
            conn.execute(sqlalchemy.text(statement))
        # Reflected only now: before the keys are attached, no table has a primary key to find sequences by.
        metadata = sqlalchemy.MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            for column in table.primary_key.columns:
                sequence = conn.execute(
                    sqlalchemy.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
                ).scalar()
                if sequence:
                    conn.execute(
                        sqlalchemy.text(
                            f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, false)'
                        ),
                        {"s": sequence},
                    )


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# What each phase line carries after its name (the caller, python-loader.ts, checks the same shapes with zod;
# test/data/shared-shapes.json holds examples both test suites check): field → (accepted types, non-negative).
PHASES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "PREPARED": {"schema": ((str, type(None)), False)},
    "READY": {"tables": ((int,), True), "rows": ((int,), True)},
}


def phase_problem(name: str, payload: object) -> str | None:
    """What is wrong with a phase line's payload, or None."""
    if not isinstance(payload, dict):
        return "not a JSON object"
    for field, (types, non_negative) in PHASES[name].items():
        if field not in payload:
            return f"{field} is missing"
        value = payload[field]
        if isinstance(value, bool) or not isinstance(value, types) or (non_negative and value < 0):
            return f"{field}: {value!r} is not valid"
    return None


def say_phase(name: str, payload: dict) -> None:
    problem = phase_problem(name, payload)
    if problem:
        raise AssertionError(f"{name} {problem}")  # a bug here, never the caller's fault
    say(f"{name} {json.dumps(payload)}")


def load_phases(
    engine, url: str, revision: str, db_dir: Path, backup_tables: set[str] | None, staging: str | None
) -> tuple[int, int]:
    """Phases 1 to 3 (see the module's docstring)."""
    deferred = prepare(engine, url, revision, backup_tables)
    say_phase("PREPARED", {"schema": staging})
    command = sys.stdin.readline().strip()
    if command == "LOAD":
        tables, rows = load(engine, db_dir)
    elif command == "SKIP":
        tables, rows = 0, 0
    else:
        fail("The restore was cancelled before it loaded the tables; the target is unchanged.")
    finish(engine, deferred)
    say_phase("READY", {"tables": tables, "rows": rows})
    return tables, rows


RESTORE_LOCK = 0x6D6C666C6F77  # pg_advisory_lock key: one PostgreSQL restore at a time per database
STAGING_PREFIX = "mlflowctl_restore_"


def restore_postgres(url: str, revision: str, db_dir: Path, replace: set[str] | None, backup_tables: set[str]) -> None:
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
        if target is None:
            fail("The target database has no current schema (an empty search_path): set one for this role.")
        existing = set(sqlalchemy.inspect(holder).get_table_names(schema=target))
        clashing = sorted((existing & backup_tables) - {"alembic_version"})
        if clashing and replace is None:
            fail(f"The target database is not empty ({len(clashing)} MLflow tables, e.g. {clashing[0]}).")
        for (stale,) in holder.execute(
            sqlalchemy.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": STAGING_PREFIX + "%"}
        ).fetchall():
            holder.execute(sqlalchemy.text(f'DROP SCHEMA "{stale}" CASCADE'))
        staging = f"{STAGING_PREFIX}{os.getpid()}"
        holder.execute(sqlalchemy.text(f'CREATE SCHEMA "{staging}"'))
        holder.commit()
        staging_url = (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={staging}"})
            .render_as_string(hide_password=False)
        )
        staging_engine = sqlalchemy.create_engine(staging_url, poolclass=NullPool)
        try:
            load_phases(staging_engine, staging_url, revision, db_dir, backup_tables, staging)
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
    finally:
        try:
            holder.rollback()
            for (stale,) in holder.execute(
                sqlalchemy.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": STAGING_PREFIX + "%"}
            ).fetchall():
                holder.execute(sqlalchemy.text(f'DROP SCHEMA "{stale}" CASCADE'))
            holder.commit()
        finally:
            holder.close()


def wait_for_commit() -> None:
    """The caller's go-ahead (it swaps the artifacts in first): anything but COMMIT leaves the target unchanged."""
    if os.environ.get("MLFLOWCTL_RESTORE_GATE") != "1":
        return
    if sys.stdin.readline().strip() != "COMMIT":
        fail("The restore was cancelled before it committed; the target is unchanged.")


def swap_in(conn, staging: str, target: str, mlflow_tables: set[str]) -> None:
    q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731
    inspector = sqlalchemy.inspect(conn)
    new_tables = inspector.get_table_names(schema=staging)
    # Old MLflow tables go, children first (a foreign table that references one makes this fail: nothing changes).
    metadata = sqlalchemy.MetaData(schema=target)
    metadata.reflect(
        conn, only=[t for t in inspector.get_table_names(schema=target) if t in mlflow_tables or t in new_tables]
    )
    for table in reversed(metadata.sorted_tables):
        conn.execute(sqlalchemy.text(f"DROP TABLE {q(target)}.{q(table.name)}"))
    for table in new_tables:
        conn.execute(sqlalchemy.text(f"ALTER TABLE {q(staging)}.{q(table)} SET SCHEMA {q(target)}"))
    # Trigger functions (secrets' AAD guard) and any standalone sequences follow their tables.
    functions = conn.execute(
        sqlalchemy.text(
            "SELECT p.oid::regprocedure::text, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s"
        ),
        {"s": staging},
    ).fetchall()
    for signature, name in functions:
        arguments = signature[signature.index("(") :]
        conn.execute(sqlalchemy.text(f"DROP FUNCTION IF EXISTS {q(target)}.{q(name)}{arguments}"))
        conn.execute(sqlalchemy.text(f"ALTER FUNCTION {signature} SET SCHEMA {q(target)}"))
    for (sequence,) in conn.execute(
        sqlalchemy.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'S'"
        ),
        {"s": staging},
    ).fetchall():
        conn.execute(sqlalchemy.text(f"DROP SEQUENCE IF EXISTS {q(target)}.{q(sequence)}"))
        conn.execute(sqlalchemy.text(f"ALTER SEQUENCE {q(staging)}.{q(sequence)} SET SCHEMA {q(target)}"))
    conn.execute(sqlalchemy.text(f"DROP SCHEMA {q(staging)}"))  # empty now; RESTRICT: fails rather than lose anything
    mark = os.environ.get("MLFLOWCTL_RESTORE_MARK", "")
    if mark:
        literal = "'" + mark.replace("'", "''") + "'"
        conn.execute(sqlalchemy.text(f"COMMENT ON TABLE {q(target)}.alembic_version IS {literal}"))
    conn.commit()
    if os.environ.get("MLFLOWCTL_RESTORE_GATE") == "1":
        say("COMMITTED")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from parent_guard import die_with_parent

    die_with_parent()
    url, revision, db_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    url = os.environ.get("MLFLOWCTL_RESTORE_URL") or url  # "-": the URL comes from the environment (not visible in ps)
    replace = set(json.loads(Path(sys.argv[4]).read_text())) if len(sys.argv) > 4 else None
    listed = os.environ.get("MLFLOWCTL_RESTORE_TABLES")
    backup_tables = (
        set(json.loads(listed))
        if listed
        else {t["name"] for t in json.loads((db_dir / "schema.json").read_text())["tables"]}
    )
    check_revision(url, revision)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "postgresql":
        restore_postgres(url, revision, db_dir, replace, backup_tables)
        return
    existing = set(sqlalchemy.inspect(engine).get_table_names())
    # Another application's tables may share the database: only tables this restore creates count, and only
    # those are dropped again on failure.
    clashing = sorted((existing & backup_tables) - {"alembic_version"})
    if clashing:
        fail(f"The target database is not empty ({len(clashing)} MLflow tables, e.g. {clashing[0]}).")
    try:
        load_phases(engine, url, revision, db_dir, backup_tables, None)
    except BaseException as exc:  # KeyboardInterrupt included: leave the target as it was
        cleanup(engine, existing)
        if isinstance(exc, SystemExit):
            raise
        fail(f"Restore failed: {reason(exc)}")


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
