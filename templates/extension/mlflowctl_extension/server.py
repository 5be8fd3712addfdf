"""Builds the app Connect serves: storage config, controlled migration, MLflow's app, our wrappers."""

from __future__ import annotations

import json
import logging
import os
import platform
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from . import EXTENSION_VERSION
from .concurrency import (
    MAX_OVERFLOW_VARIABLE,
    POOL_SIZE_VARIABLE,
    handler_threads,
    limit_handler_threads,
    pool_environment,
)
from .dispatch import BoundedWsgi, FlaskFirstAsgi, FlaskFirstWsgi, NativeRoutes
from .logs import configure_logging, log_event, redact, register_secret
from .metrics import ArtifactSize, Metrics
from .migrations import create_engine, ensure_schema, inspect_schema, row_estimates
from .ops import STATUS_FORMAT_VERSION, OpsContext, disk_space, utc_now
from .replica_service import hold_wal, start_replication
from .settings import (
    StartupError,
    StorageConfig,
    ahead_allowed,
    auto_migrate_enabled,
    connect_public_url,
    load_replica_settings,
    load_retention_settings,
    load_storage_config,
)
from .storage_service import StorageService
from .transfer import has_data, last_snapshot, recover

BUNDLE_DIR = Path(__file__).resolve().parent.parent
ASGI_FROM = (3, 3)  # mlflow.server.fastapi_app exists from MLflow 3.3.0 (#17038)


def read_bundle_info(bundle_dir: Path = BUNDLE_DIR) -> dict[str, Any]:
    """mlflowctl.json, written by `mlflowctl init` next to app.py; {} when absent."""
    try:
        return json.loads((bundle_dir / "mlflowctl.json").read_text())
    except (OSError, ValueError):
        return {}


def _release(version: str) -> tuple[int, ...]:
    from packaging.version import Version

    return Version(version).release


def _dialect(storage: StorageConfig) -> str:
    return storage.backend_store_uri.split(":", 1)[0].split("+", 1)[0]


def server_environment(storage: StorageConfig, env: Mapping[str, str], mlflow_version: str) -> dict[str, str]:
    """The variables `mlflow server --serve-artifacts` would hand its workers, the database pool for
    the requests one process serves at once (concurrency.py), and the 3.5+ host allow-list and 3.10+ CORS origins
    derived from the public Connect URL."""
    out = {
        "_MLFLOW_SERVER_FILE_STORE": storage.backend_store_uri,
        "_MLFLOW_SERVER_REGISTRY_STORE": storage.backend_store_uri,
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": storage.artifacts_destination,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": env.get("MLFLOW_DEFAULT_ARTIFACT_ROOT") or "mlflow-artifacts:/",
        **pool_environment(_dialect(storage), env),
    }
    public = connect_public_url(env)
    release = _release(mlflow_version)
    if public and release >= (3, 5) and not env.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
        parts = urlsplit(public)
        hosts = [parts.hostname or ""]
        if parts.port:
            hosts.append(f"{parts.hostname}:{parts.port}")
        # Connect's proxy, and local probes, may present a loopback Host header.
        hosts += ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[::1]:*"]
        out["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(h for h in hosts if h)
    if public and release >= (3, 10) and not env.get("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"):
        parts = urlsplit(public)
        out["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] = f"{parts.scheme}://{parts.netloc}"
    return out


def database_bytes(engine: Any, sqlite_path: Path | None) -> int | None:
    """The database's size: the SQLite file with its WAL, or PostgreSQL's own count; None elsewhere."""
    if sqlite_path is not None:
        sizes = [
            path.stat().st_size
            for path in (sqlite_path, sqlite_path.with_name(sqlite_path.name + "-wal"))
            if path.exists()
        ]
        return sum(sizes) if sizes else None
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())")).scalar() or 0)
    except SQLAlchemyError:
        return None


def _make_describe(
    storage: StorageConfig,
    bundle: dict[str, Any],
    mlflow_version: str,
    started_at: str,
    cloud_status: Callable[[], dict[str, Any]] | None = None,
    replica_status: Callable[[], dict[str, Any]] | None = None,
    startup_view: Callable[[], dict[str, Any]] | None = None,
    gc_status: Callable[[], dict[str, Any]] | None = None,
):
    engine = create_engine(storage.backend_store_uri)
    artifact_bytes = ArtifactSize(Path(storage.artifacts_destination)) if storage.mode == "local" else (lambda: None)

    def describe() -> dict[str, Any]:
        state = inspect_schema(engine, ahead_allowed(os.environ))
        free, total = disk_space(storage.data_dir)
        return {
            **(cloud_status() if cloud_status else {"credentialsSource": None, "credentials": []}),
            "statusVersion": STATUS_FORMAT_VERSION,
            "extensionVersion": EXTENSION_VERSION,
            "mlflowVersion": mlflow_version,
            "bundleMlflowVersion": bundle.get("mlflowVersion"),
            "appMode": bundle.get("appMode"),
            "storageMode": storage.mode,
            "dbDialect": engine.dialect.name,
            "pythonVersion": platform.python_version(),
            "sqliteVersion": sqlite3.sqlite_version,
            "tables": sorted(sqlalchemy.inspect(engine).get_table_names()),
            "rowEstimates": row_estimates(engine),
            "dbRevision": state.revision,
            "expectedHead": state.head,
            "schemaState": state.kind,
            "pendingMigrations": state.pending,
            "backendStore": redact(storage.backend_store_uri),
            "dataDir": str(storage.data_dir) if storage.data_dir else None,
            "databaseBytes": database_bytes(engine, storage.sqlite_path),
            # Local storage only: an object store's total would take a listing of every object.
            "artifactBytes": artifact_bytes(),
            "dataDirFreeBytes": free,
            "dataDirTotalBytes": total,
            # Local storage only (cheap counts on the SQLite file); what `backup restore --to connect:` checks.
            "hasData": has_data(storage.sqlite_path, Path(storage.artifacts_destination))
            if storage.mode == "local" and storage.sqlite_path
            else None,
            "startedAt": started_at,
            # How the start went: the migration it ran (from, to, steps, when), if any.
            "startup": startup_view() if startup_view else None,
            # The last snapshot a backup took whole through POST /_mlflowctl/snapshot (local storage).
            "lastSnapshot": last_snapshot(storage),
            # MLFLOWCTL_REPLICA_URL: role, generation, WAL position, last shipped round, lag, errors (replica_service.py).
            "replica": replica_status() if replica_status else None,
            # MLFLOWCTL_RETENTION, the last gc or retention pass, and what is deleted but not purged yet.
            "gc": gc_status() if gc_status else None,
            "now": utc_now(),
        }

    return describe


def build_app() -> Any:
    """Returns the WSGI or ASGI app Connect serves, at once; the start-up steps (configuration, recovery, controlled
    migration, replication, MLflow's app) run on a thread of their own while it answers 503 (startup.py).
    `app.startup.wait()` returns once they are done (True) or refused (False, after a `startup.refused` line)."""
    import mlflow  # configures MLflow's logging; ours goes on top of it

    from .middleware import AsgiExtension, WsgiExtension
    from .startup import Startup

    configure_logging()
    env = dict(os.environ)
    ops_token = env.get("MLFLOWCTL_OPS_TOKEN") or None
    register_secret(ops_token)
    register_secret(env.get("CONNECT_API_KEY"))
    bundle = read_bundle_info()
    # Connect picks the server from the manifest's app mode, so the bundle's choice wins.
    app_mode = bundle.get("appMode")
    asgi = app_mode == "python-fastapi" if app_mode else _release(mlflow.__version__) >= ASGI_FROM
    startup = Startup()
    ops = OpsContext(ops_token, None, startup=startup)
    # The metrics answer from the first request: state and up while starting, the full status once ready.
    ops.metrics.bind_state(startup.view, lambda: ops.describe() if ops.describe else None)
    gate: Any = AsgiExtension(None, ops) if asgi else WsgiExtension(None, ops)
    thread = threading.Thread(target=_start, args=(gate, ops, env, bundle, asgi), name="mlflowctl-startup", daemon=True)
    thread.start()
    return gate


def _start(gate: Any, ops: OpsContext, env: dict[str, str], bundle: dict[str, Any], asgi: bool) -> None:
    """The start-up steps, on their own thread. Ends with the gate serving MLflow, or with the refusal recorded."""
    import mlflow

    startup = ops.startup
    assert startup is not None
    try:
        storage = load_storage_config(env)
        cloud_runtime = None
        if storage.cloud is not None:
            from .cloud import activate

            cloud_runtime = activate(storage, env)
            storage = cloud_runtime.storage
        pinned = bundle.get("mlflowVersion")
        if pinned and pinned != mlflow.__version__:
            log_event(
                "startup.version_mismatch",
                "installed MLflow differs from the bundle's pin",
                logging.WARNING,
                installed=mlflow.__version__,
                pinned=pinned,
            )
        log_event(
            "startup.config",
            "storage configured",
            mode=storage.mode,
            backend=redact(storage.backend_store_uri),
            artifacts=redact(storage.artifacts_destination),
            mlflow=mlflow.__version__,
        )
        os.environ.update(server_environment(storage, env, mlflow.__version__))
        replica_settings = load_replica_settings(env)
        hold_wal(
            storage, replica_settings
        )  # first: the start-up steps below must not checkpoint away a WAL the replica resumes
        recover(storage)  # a restore or snapshot interrupted by a restart leaves a flag and spools behind
        ensure_schema(storage, auto_migrate_enabled(env), progress=startup.migrating, ahead_allowed=ahead_allowed(env))
        startup.migrated()
        replication = start_replication(storage, replica_settings)
        storage_service = StorageService(
            storage,
            create_engine(storage.backend_store_uri),
            _tracking_store,
            load_retention_settings(env),
            traffic=ops.traffic,
        )
        ops.describe = _make_describe(
            storage,
            bundle,
            mlflow.__version__,
            utc_now(),
            cloud_runtime.status if cloud_runtime else None,
            replication.status if replication else None,
            startup.view,
            storage_service.status,
        )
        ops.storage = storage
        ops.storage_service = storage_service
        ops.artifact_written = replication.artifact_written if replication else None
        gate.app = _load_mlflow_app(
            asgi, _release(mlflow.__version__) >= ASGI_FROM, gate, handler_threads(_dialect(storage), env)
        )
        storage_service.start_retention()
    except StartupError as exc:
        message = redact(str(exc))
        log_event("startup.refused", message, logging.ERROR, code=exc.code)
        startup.refuse(exc.code, message)
        return
    except Exception as exc:  # noqa: BLE001 - whatever it is, the process must say so rather than hang in "starting"
        message = redact(f"{type(exc).__name__}: {exc}")
        log_event("startup.refused", f"the start-up failed: {message}", logging.ERROR, code="STARTUP_FAILED")
        startup.refuse("STARTUP_FAILED", message)
        return
    startup.ready()


def _tracking_store() -> Any:
    """The store MLflow's own handlers use (from _MLFLOW_SERVER_FILE_STORE): gc deletes through the same code."""
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def _load_mlflow_app(asgi: bool, has_fastapi_app: bool, gate: Any, threads: int) -> Any:
    started = time.monotonic()
    if asgi:
        from mlflow.server.fastapi_app import app as asgi_app

        # The host ran our lifespan, not MLflow's (its app did not exist yet): run its startup on the host's loop.
        gate.when_host_loop(lambda loop: _run_lifespan_startup(asgi_app, loop, threads, gate.ops.metrics))
        app: Any = FlaskFirstAsgi(asgi_app, NativeRoutes(asgi_app))
        interface = "asgi (Flask routes straight to MLflow's WSGI bridge)"
    elif has_fastapi_app:
        # python-api content (a deployed item keeps its first app mode: Connect refuses a change, error 48) on
        # MLflow 3.3+: the same FastAPI app as python-fastapi, FastAPI-only routes included (OTLP ingestion,
        # jobs, gateway, streamed artifacts), through a2wsgi's ASGI-to-WSGI bridge. Flask alone lacks them.
        from a2wsgi import ASGIMiddleware
        from mlflow.server import app as flask_app
        from mlflow.server.fastapi_app import app as asgi_app

        # a2wsgi types its app as a narrower callable than Starlette's; FastAPI is an ASGI 3 app all the same.
        bridge = ASGIMiddleware(asgi_app)  # pyright: ignore[reportArgumentType]
        _run_lifespan_startup(asgi_app, bridge.loop, threads)
        # The metrics follow the Flask routes' slots: the REST API, which is where requests queue.
        bounded = BoundedWsgi(flask_app, threads, gate.ops.metrics.handler_waited)
        gate.ops.metrics.bind_slots(bounded.slots)
        app = FlaskFirstWsgi(bounded, bridge, NativeRoutes(asgi_app))
        interface = "wsgi (Flask routes on the host's threads, the FastAPI app's own through a2wsgi)"
    else:
        from mlflow.server import app as wsgi_app

        app = BoundedWsgi(wsgi_app, threads, gate.ops.metrics.handler_waited)
        gate.ops.metrics.bind_slots(app.slots)
        interface = "wsgi"
    log_event(
        "startup.ready",
        "MLflow app loaded",
        interface=interface,
        handler_threads=threads,
        pool=os.environ.get(POOL_SIZE_VARIABLE),
        pool_overflow=os.environ.get(MAX_OVERFLOW_VARIABLE),
        seconds=round(time.monotonic() - started, 3),
    )
    return app


def _run_lifespan_startup(
    asgi_app: Any, loop: Any, threads: int, metrics: Metrics | None = None, timeout: float = 60.0
) -> None:
    """On the loop that serves MLflow's FastAPI app: bound its handler threads (concurrency.py), then run the app's
    lifespan startup, which neither a2wsgi nor our gate's host ran (MLflow's app did not exist yet when the host
    started); it does start-up housekeeping (assistant sandbox clean-up). Best effort: a failure is logged, not fatal,
    because requests do not depend on it."""
    import asyncio

    async def lifespan() -> None:
        limiter = limit_handler_threads(threads)
        if metrics is not None:
            # Read from the scrape's thread: sizes only, a moment's inconsistency is harmless.
            metrics.bind_slots(
                lambda: (int(limiter.total_tokens), int(limiter.borrowed_tokens), limiter.statistics().tasks_waiting)
            )
        started = asyncio.Event()
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            if message.get("type") in ("lifespan.startup.complete", "lifespan.startup.failed"):
                started.set()

        # The app keeps waiting for lifespan.shutdown on the loop's thread; the process exits without it.
        asyncio.ensure_future(
            asgi_app(
                {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}, inbox.get, send
            )
        )
        await asyncio.wait_for(started.wait(), timeout)

    try:
        asyncio.run_coroutine_threadsafe(lifespan(), loop).result(timeout + 5)
    except Exception as exc:  # noqa: BLE001 - housekeeping only
        log_event(
            "startup.lifespan_failed",
            f"the FastAPI app's lifespan startup did not complete: {type(exc).__name__}",
            logging.WARNING,
        )
