"""GET /_mlflowctl/metrics: the extension's state and traffic in Prometheus' text format, behind the ops token.

MLflow's server has no metrics of its own. What is counted as it happens (requests by route class and status, their
latency, waits for a handler slot) lives in this process's registry; what describes the deployment (versions, schema,
sizes, replication, gc, migration) is read from the ops status at scrape time, so the two can never disagree. Each
Connect process counts its own requests: a scrape reaches one of them, and `process_start_time_seconds` tells a
restart from a counter reset.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics", "route_class"]

# The text format generate_latest writes, under the content type every Prometheus (2.x included) and agent parses.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# A `_created` series per counter doubles the output and tells nothing `process_start_time_seconds` does not.
disable_created_metrics()

# Route classes: few enough to keep the label's cardinality fixed whatever paths clients send.
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("health", re.compile(r"^/(health|version|server-info)/?$")),
    ("artifacts", re.compile(r"^/(ajax-)?api/2\.0/mlflow-artifacts/|^/get-artifact|/artifacts/")),
    ("traces", re.compile(r"^/(ajax-)?api/[23]\.0/mlflow/traces|^/v1/traces")),
    ("metrics", re.compile(r"^/(ajax-)?api/2\.0/mlflow/(metrics|runs/log-batch|runs/log-metric)")),
    ("runs", re.compile(r"^/(ajax-)?api/2\.0/mlflow/runs/")),
    ("experiments", re.compile(r"^/(ajax-)?api/2\.0/mlflow/experiments/")),
    ("models", re.compile(r"^/(ajax-)?api/2\.0/mlflow/(registered-models|model-versions)/")),
    ("api_other", re.compile(r"^/(ajax-)?api/")),
]
# Request durations from a health check (milliseconds) to a large artifact transfer (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A walk of a large artifact tree costs seconds: its total is recomputed at most this often.
ARTIFACT_SIZE_TTL_SECONDS = 300.0


def route_class(path: str) -> str:
    """The route class of a request path (its /content/<guid> prefix already stripped)."""
    for name, pattern in _ROUTES:
        if pattern.search(path):
            return name
    return "ui"


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from an ISO 8601 string or a number; None when absent or unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _duration(start: Any, end: Any) -> float | None:
    began, ended = _timestamp(start), _timestamp(end)
    return None if began is None or ended is None else max(0.0, ended - began)


def _gauge(name: str, documentation: str, value: float | None, labels: dict[str, str] | None = None) -> Metric | None:
    if value is None:
        return None
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value))
    return family


class StateCollector(Collector):
    """The deployment's state at scrape time, from the startup view and the ops status."""

    def __init__(self, view: Callable[[], dict[str, Any]], describe: Callable[[], dict[str, Any] | None]) -> None:
        self._view = view
        self._describe = describe

    def collect(self) -> Iterable[Metric]:
        view = self._view()
        ready = view.get("state") == "ready"
        yield from filter(None, [_gauge("mlflowctl_up", "1 when the extension serves MLflow, else 0.", int(ready))])
        state = GaugeMetricFamily(
            "mlflowctl_startup_state", "The start-up state (1 for the current one).", labels=["state"]
        )
        for name in ("starting", "migrating", "ready", "refused"):
            state.add_metric([name], 1.0 if view.get("state") == name else 0.0)
        yield state
        migration = view.get("migration") or {}
        yield from filter(
            None,
            [
                _gauge(
                    "mlflowctl_migration_running",
                    "1 while a schema migration runs.",
                    int(view.get("state") == "migrating"),
                ),
                _gauge(
                    "mlflowctl_migration_step",
                    "The migration step running or last run, of mlflowctl_migration_steps.",
                    migration.get("step"),
                ),
                _gauge("mlflowctl_migration_steps", "Steps of the migration this process ran.", migration.get("of")),
                _gauge(
                    "mlflowctl_migration_last_duration_seconds",
                    "How long the schema migration this process ran took.",
                    _duration(migration.get("startedAt"), migration.get("finishedAt")),
                ),
            ],
        )
        status = None
        if ready:
            try:
                status = self._describe()
            except Exception:  # noqa: BLE001 - a scrape must answer even when the database is down
                status = None
        yield from filter(
            None, [_gauge("mlflowctl_status_up", "1 when the ops status could be read.", int(bool(status)))]
        )
        if status:
            yield from self._status_metrics(status)

    def _status_metrics(self, status: dict[str, Any]) -> Iterator[Metric]:
        info = InfoMetricFamily("mlflowctl_build", "Versions and storage of this deployment.")
        info.add_metric(
            [],
            {
                "mlflow_version": str(status.get("mlflowVersion") or ""),
                "extension_version": str(status.get("extensionVersion") or ""),
                "python_version": str(status.get("pythonVersion") or ""),
                "storage_mode": str(status.get("storageMode") or ""),
                "db_dialect": str(status.get("dbDialect") or ""),
            },
        )
        yield info
        schema = InfoMetricFamily("mlflowctl_schema", "The database's schema revision and the one this MLflow expects.")
        schema.add_metric(
            [],
            {
                "revision": str(status.get("dbRevision") or ""),
                "expected_head": str(status.get("expectedHead") or ""),
                "state": str(status.get("schemaState") or ""),
            },
        )
        yield schema
        pending = status.get("pendingMigrations")
        replica = status.get("replica") or {}
        gc_last = (status.get("gc") or {}).get("last") or {}
        gauges = [
            _gauge(
                "mlflowctl_schema_current",
                "1 when the schema is at the revision this MLflow expects.",
                int(status.get("schemaState") == "current"),
            ),
            _gauge(
                "mlflowctl_schema_pending_migrations",
                "Migrations between the database and this MLflow.",
                len(pending) if isinstance(pending, list) else None,
            ),
            _gauge("mlflowctl_database_bytes", "Size of the tracking database.", status.get("databaseBytes")),
            _gauge(
                "mlflowctl_artifact_bytes",
                "Size of the artifacts in the data directory (local storage; recomputed every 5 minutes).",
                status.get("artifactBytes"),
            ),
            _gauge(
                "mlflowctl_data_dir_free_bytes", "Free space in the data directory.", status.get("dataDirFreeBytes")
            ),
            _gauge(
                "mlflowctl_data_dir_size_bytes",
                "Size of the data directory's file system.",
                status.get("dataDirTotalBytes"),
            ),
            _gauge(
                "mlflowctl_replica_lag_seconds",
                "Time since the last replication round that caught up.",
                replica.get("lagSeconds"),
            ),
            _gauge(
                "mlflowctl_replica_last_round_timestamp_seconds",
                "When the last replication round began.",
                _timestamp(replica.get("lastRoundAt")),
            ),
            _gauge(
                "mlflowctl_replica_error",
                "1 while the replica's last round failed.",
                int(bool(replica.get("lastError"))) if replica else None,
            ),
            _gauge(
                "mlflowctl_last_snapshot_timestamp_seconds",
                "When a backup last took a whole snapshot through the ops endpoint (local storage).",
                _timestamp((status.get("lastSnapshot") or {}).get("at")),
            ),
            _gauge(
                "mlflowctl_gc_last_run_timestamp_seconds",
                "When the last gc or retention pass finished.",
                _timestamp(gc_last.get("finishedAt")),
            ),
            _gauge(
                "mlflowctl_gc_last_run_success",
                "1 when the last gc or retention pass succeeded.",
                int(bool(gc_last.get("ok"))) if gc_last else None,
            ),
            _gauge(
                "mlflowctl_gc_last_run_freed_bytes",
                "Bytes the last gc or retention pass freed.",
                gc_last.get("bytesFreed"),
            ),
        ]
        yield from filter(None, gauges)
        if replica:
            shipped = CounterMetricFamily(
                "mlflowctl_replica_shipped_frames", "WAL frames this process shipped to the replica."
            )
            shipped.add_metric([], float(replica.get("shippedFrames") or 0))
            yield shipped


class SlotsCollector(Collector):
    def __init__(self, slots: Callable[[], tuple[int, int, int]]) -> None:
        self._slots = slots

    def collect(self) -> Iterable[Metric]:
        total, busy, waiting = self._slots()
        yield from filter(
            None,
            [
                _gauge("mlflowctl_handler_slots", "Requests MLflow's handlers may run at once in this process.", total),
                _gauge("mlflowctl_handler_slots_busy", "Handler slots in use.", busy),
                _gauge("mlflowctl_handler_slots_waiting", "Requests waiting for a handler slot.", waiting),
            ],
        )


class Metrics:
    """This process's registry: counted traffic plus the state collector (bound once the app is built)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "mlflowctl_http_requests",
            "Requests answered by MLflow (and 503s while starting or restoring), by route class and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mlflowctl_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route class and status.",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._waits = Counter(
            "mlflowctl_handler_waits",
            "Requests that waited for a handler slot (WSGI hosts; under ASGI see mlflowctl_handler_slots_waiting).",
            registry=self.registry,
        )
        self._waited = Counter(
            "mlflowctl_handler_wait_seconds",
            "Time requests spent waiting for a handler slot (WSGI hosts).",
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._state: StateCollector | None = None
        self._slots: SlotsCollector | None = None

    def count(self, path: str, status: int) -> None:
        """A request answered (called as its status is sent)."""
        self._requests.labels(route_class(path), str(status)).inc()

    def time(self, path: str, status: int, seconds: float) -> None:
        """How long a request took, once its answer is complete."""
        self._latency.labels(route_class(path), str(status)).observe(seconds)

    def observe(self, path: str, status: int, seconds: float) -> None:
        """An answer sent whole at once (a 503 while starting or restoring)."""
        self.count(path, status)
        self.time(path, status, seconds)

    def handler_waited(self, seconds: float) -> None:
        self._waits.inc()
        self._waited.inc(seconds)

    def bind_state(self, view: Callable[[], dict[str, Any]], describe: Callable[[], dict[str, Any] | None]) -> None:
        with self._lock:
            if self._state is None:
                self._state = StateCollector(view, describe)
                self.registry.register(self._state)

    def bind_slots(self, slots: Callable[[], tuple[int, int, int]]) -> None:
        """The handler slots MLflow's requests take (slots, busy, waiting): a semaphore under a WSGI host, anyio's
        thread limiter on MLflow's event loop under an ASGI host."""
        with self._lock:
            if self._slots is None:
                self._slots = SlotsCollector(slots)
                self.registry.register(self._slots)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ArtifactSize:
    """The bytes under a local artifact root, recomputed at most every ARTIFACT_SIZE_TTL_SECONDS."""

    def __init__(self, root: Path, ttl: float = ARTIFACT_SIZE_TTL_SECONDS) -> None:
        self._root = root
        self._ttl = ttl
        self._value: int | None = None
        self._at = -ttl
        self._lock = threading.Lock()

    def __call__(self) -> int | None:
        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                self._value = _tree_bytes(self._root)
                self._at = time.monotonic()
            return self._value


def _tree_bytes(root: Path) -> int | None:
    if not root.is_dir():
        return None
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # deleted while we walked
    return total
