"""Schema migrations under control: compare the DB revision with the installed MLflow's head, then
initialise, upgrade once (under a cross-process lock, after a snapshot) or refuse."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.pool import NullPool

from .logs import log_event, redact
from .settings import StartupError, StorageConfig

# Stable 63-bit key for pg_advisory_lock, shared by every process of every extension version.
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"mlflowctl-schema-migration").digest()[:8], "big") >> 1


@dataclass
class SchemaState:
    """kind: empty | current | behind | unknown | unversioned | ahead-additive (a newer revision mlflowctl allowed)."""

    kind: str
    revision: str | None
    head: str
    pending: list[str] = field(default_factory=list)


def create_engine(uri: str) -> sqlalchemy.engine.Engine:
    return sqlalchemy.create_engine(uri, poolclass=NullPool)


@functools.lru_cache(maxsize=1)
def _script_directory():
    """MLflow's migration scripts (read once per process: loading them takes a second or two, and the ops status
    asks on every call)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(db_url=""))


@functools.lru_cache(maxsize=1)
def expected_head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def inspect_schema(engine: sqlalchemy.engine.Engine, ahead_allowed: str | None = None) -> SchemaState:
    """Reads the DB revision and classifies it against the installed MLflow's chain. Never writes.

    `ahead_allowed`: a revision this MLflow does not know that mlflowctl found additive from its head."""
    head = expected_head()
    tables = [t for t in sqlalchemy.inspect(engine).get_table_names() if not t.startswith("alembic_")]
    revision = read_revision(engine)
    if not tables and revision is None:
        return SchemaState("empty", None, head)
    if revision is None:
        return SchemaState("unversioned", None, head)
    if revision == head:
        return SchemaState("current", revision, head)
    script = _script_directory()
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        return SchemaState("ahead-additive" if revision == ahead_allowed else "unknown", revision, head)
    pending = [rev.revision for rev in script.iterate_revisions(head, revision)]
    pending.reverse()
    return SchemaState("behind", revision, head, pending)


# The tables whose size decides how long a heavy migration takes.
SIZED_TABLES = (
    "metrics",
    "latest_metrics",
    "params",
    "tags",
    "runs",
    "experiments",
    "spans",
    "trace_info",
    "trace_tags",
    "logged_models",
)


def row_estimates(engine: sqlalchemy.engine.Engine) -> dict[str, int]:
    """Cheap row estimates for upgrade planning, never COUNT(*): max(rowid) on SQLite (an upper bound when
    rows were deleted) and the planner's reltuples on PostgreSQL. Empty for other dialects."""
    dialect = engine.dialect.name
    names = set(sqlalchemy.inspect(engine).get_table_names())
    out: dict[str, int] = {}
    with engine.connect() as conn:
        if dialect == "sqlite":
            for table in SIZED_TABLES:
                if table in names:
                    out[table] = int(
                        conn.execute(sqlalchemy.text(f'SELECT coalesce(max(rowid), 0) FROM "{table}"')).scalar() or 0
                    )
        elif dialect == "postgresql":
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"
                )
            )
            out = {name: max(int(tuples), 0) for name, tuples in rows if name in SIZED_TABLES}
    return out


def read_revision(engine: sqlalchemy.engine.Engine) -> str | None:
    """The single row of alembic_version, or None when the table is absent or empty."""
    if "alembic_version" not in sqlalchemy.inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        row = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


@contextlib.contextmanager
def migration_lock(engine: sqlalchemy.engine.Engine, storage: StorageConfig | None) -> Iterator[None]:
    """Holds a lock that every process of this deployment contends for: a file lock for SQLite (in the storage's
    state directory, so `storage` is needed there), an advisory lock for PostgreSQL (and the equivalents for MySQL and
    SQL Server, untested here)."""
    dialect = engine.dialect.name
    started = time.monotonic()
    if dialect == "sqlite":
        assert storage is not None, "a SQLite file's migration lock lives beside it"
        lock_path = (
            (storage.state_dir / "migrate.lock") if storage.state_dir else Path(f"{storage.sqlite_path}.mlflowctl.lock")
        )
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            log_event(
                "migration.lock",
                "acquired the migration lock",
                kind="file",
                waited_s=round(time.monotonic() - started, 3),
            )
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        acquire, release = _server_lock_sql(dialect)
        if acquire is not None:
            conn.execute(sqlalchemy.text(acquire), {"key": PG_LOCK_KEY})
            conn.commit()
        log_event(
            "migration.lock",
            "acquired the migration lock",
            kind=f"{dialect}-advisory" if acquire else "none",
            waited_s=round(time.monotonic() - started, 3),
        )
        try:
            yield
        finally:
            if release is not None:
                conn.execute(sqlalchemy.text(release), {"key": PG_LOCK_KEY})
                conn.commit()


def _server_lock_sql(dialect: str) -> tuple[str | None, str | None]:
    if dialect == "postgresql":
        return "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    if dialect == "mysql":
        return "SELECT GET_LOCK(CONCAT('mlflowctl-', :key), -1)", "SELECT RELEASE_LOCK(CONCAT('mlflowctl-', :key))"
    if dialect == "mssql":
        return (
            "EXEC sp_getapplock @Resource = 'mlflowctl-migrate', @LockMode = 'Exclusive', @LockOwner = 'Session', @DbPrincipal = 'public' -- :key",
            "EXEC sp_releaseapplock @Resource = 'mlflowctl-migrate', @LockOwner = 'Session' -- :key",
        )
    return None, None


def snapshot_sqlite(storage: StorageConfig, state: SchemaState) -> Path | None:
    """Copies the SQLite DB with the online backup API before it is migrated (local data only)."""
    if storage.sqlite_path is None or storage.state_dir is None:
        return None
    target_dir = storage.state_dir / "snapshots"
    target_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = target_dir / f"pre-migrate-{stamp}-{state.revision}-to-{state.head}.db"
    source = sqlite3.connect(str(storage.sqlite_path))
    try:
        dest = sqlite3.connect(str(target))
        with dest:
            source.backup(dest)
        dest.close()
    finally:
        source.close()
    target.chmod(0o600)
    log_event("migration.snapshot", "took a pre-migration snapshot", path=str(target), bytes=target.stat().st_size)
    return target


# Told before each revision is applied: step, of, revision, title, the starting revision and the head.
Progress = Callable[..., None]


def _run_upgrade(engine: sqlalchemy.engine.Engine, state: SchemaState, progress: Progress | None = None) -> None:
    """Applies the pending revisions inside ONE transaction, as `mlflow db upgrade` does, and logs one structured
    line per step. (Alembic's own log lines cannot be relied on: MLflow 2.x's env.py re-runs fileConfig on them.)

    A database that is behind takes its revisions one by one, so that a long migration names itself. An empty one
    takes the whole chain in one step: its tables hold no rows, so no revision there takes long, and each extra
    step costs a load of MLflow's migration environment (about 1.5 s of CPU over 3.x's chain on a first start)."""
    from alembic import command
    from mlflow.store.db import utils as db_utils

    script = _script_directory()
    steps = [(revision, script.get_revision(revision).doc) for revision in state.pending]
    if state.kind == "empty":
        # `mlflow db upgrade` cannot start from nothing (mlflow#2113): create the initial tables first,
        # exactly as MLflow's own _initialize_tables does, then walk the whole chain.
        from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

        InitialBase.metadata.create_all(engine)
        chain = sum(1 for _ in script.iterate_revisions(state.head, "base"))
        steps = [(state.head, f"create the schema: the initial tables, then all {chain} revisions")]
    check_sqlite = getattr(db_utils, "_check_sqlite_version", None)  # 3.7+: refuses SQLite < 3.31
    url = engine.url.render_as_string(hide_password=False)
    if check_sqlite:
        check_sqlite(url)
    config = db_utils._get_alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        for index, (revision, title) in enumerate(steps, start=1):
            started = time.monotonic()
            if progress is not None:
                progress(
                    step=index,
                    of=len(steps),
                    revision=revision,
                    title=title,
                    from_revision=state.revision,
                    head=state.head,
                )
            command.upgrade(config, revision)
            log_event(
                "migration.step",
                f"applied revision {revision}",
                step=index,
                of=len(steps),
                revision=revision,
                title=title,
                seconds=round(time.monotonic() - started, 3),
            )


def ensure_schema(
    storage: StorageConfig,
    auto_migrate: bool,
    progress: Progress | None = None,
    ahead_allowed: str | None = None,
) -> SchemaState:
    """Brings the DB to the installed MLflow's head, or refuses. `progress` is told of each revision before it runs.
    A DB at `ahead_allowed` (MLFLOWCTL_SCHEMA_AHEAD_ALLOWED) is served as it is when this MLflow's models fit it.

    Writes: initialises an empty DB; upgrades a DB that is behind (snapshot first in local mode).
    @raises StartupError for a DB ahead of the code, an unknown or missing revision, pending
    migrations with MLFLOWCTL_AUTO_MIGRATE=false, or an unreachable DB.
    """
    engine = create_engine(storage.backend_store_uri)
    try:
        with migration_lock(engine, storage):
            state = inspect_schema(engine, ahead_allowed)
            log_event(
                "migration.check",
                f"database schema is {state.kind}",
                state=state.kind,
                revision=state.revision,
                head=state.head,
                pending=len(state.pending),
            )
            _refuse_if_unusable(state, auto_migrate)
            if state.kind == "ahead-additive":
                _accept_ahead(engine, state)
            if state.kind in ("empty", "behind"):
                if state.kind == "behind":
                    snapshot_sqlite(storage, state)
                log_event(
                    "migration.start",
                    "migrating the database schema",
                    revision=state.revision,
                    head=state.head,
                    pending=state.pending,
                )
                started = time.monotonic()
                _run_upgrade(engine, state, progress)
                after = read_revision(engine)
                if after != state.head:
                    raise StartupError(f"Schema migration ended at revision {after}, expected {state.head}.")
                log_event(
                    "migration.done",
                    "database schema is current",
                    revision=after,
                    seconds=round(time.monotonic() - started, 3),
                )
                state = SchemaState("current", after, state.head)
            return state
    except sqlalchemy.exc.OperationalError as exc:
        raise StartupError(
            f"Cannot reach the backend store {redact(storage.backend_store_uri)}: {redact(str(exc.orig))}".strip(),
            code="DB_UNREACHABLE",
        ) from None
    finally:
        engine.dispose()


def _accept_ahead(engine: sqlalchemy.engine.Engine, state: SchemaState) -> None:
    """Serves a DB that newer, additive migrations moved past this MLflow's head, after checking it fits."""
    import mlflow

    from .schema_ahead import schema_gaps, tolerate_revision

    gaps = schema_gaps(engine)
    if gaps:
        raise StartupError(
            f"The database is at schema revision {state.revision}, ahead of MLflow {mlflow.__version__}'s head "
            f"{state.head}, and MLFLOWCTL_SCHEMA_AHEAD_ALLOWED allows it, but this MLflow cannot run on it: "
            f"{'; '.join(gaps[:5])}. Refusing to start: deploy the MLflow version that migrated it, or restore a backup.",
            code="DB_AHEAD_NOT_ADDITIVE",
        )
    tolerate_revision(state.revision or "")
    log_event(
        "migration.ahead",
        "serving a database ahead of this MLflow's head (additive migrations only)",
        logging.WARNING,
        revision=state.revision,
        head=state.head,
    )


def _refuse_if_unusable(state: SchemaState, auto_migrate: bool) -> None:
    import mlflow

    if state.kind == "unknown":
        raise StartupError(
            f"The database is at schema revision {state.revision}, which MLflow {mlflow.__version__} does not know "
            f"(its head is {state.head}). The database was migrated by a newer MLflow, or belongs to another "
            "application. Refusing to start: deploy the MLflow version that matches the database, or restore a backup.",
            code="DB_REVISION_UNKNOWN",
        )
    if state.kind == "unversioned":
        raise StartupError(
            "The database holds tables but no alembic_version revision (a pre-1.0 MLflow database, a partial "
            "initialisation, or another application's tables). Refusing to start: point the extension at an empty "
            "database or restore a backup.",
            code="DB_UNVERSIONED",
        )
    if state.kind == "behind" and not auto_migrate:
        raise StartupError(
            f"The database is at schema revision {state.revision} and MLflow {mlflow.__version__} expects {state.head} "
            f"({len(state.pending)} pending migrations), and MLFLOWCTL_AUTO_MIGRATE=false. Refusing to start: run the "
            "migration with mlflowctl, or set MLFLOWCTL_AUTO_MIGRATE=true.",
            code="MIGRATIONS_PENDING",
        )
