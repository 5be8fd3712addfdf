"""`mlflowctl gc` and the daily retention: permanently delete what is marked deleted, old traces and orphaned files.

Rows first, then files. Rows go through MLflow's own store (its _hard_delete_* methods and _delete_traces), one row
per transaction, so every cascade MLflow defines holds; the files of a batch are deleted only after its rows are
gone. A kill between the two leaves files that no row refers to, which the orphan pass (`--orphans`) finds; never
a row whose files are gone. A file that a remaining row refers to (a registered model version whose source lies in a
purged run's directory) is kept.

It runs while the server serves: each transaction is small (a long metric history is deleted in chunks of
METRIC_CHUNK rows first), and after each one the caller's `yield_to` runs (in the extension: wait until the requests
in flight are answered), so no lock is held for long and writers get their turn. The result reports the longest
transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy

from .artifact_files import ArtifactFile, ArtifactFiles
from .storage_catalog import Catalog, Row, ancestors, covered, covering, orphan_units, read_catalog

DAY_MS = 24 * 3600 * 1000
DEFAULT_OLDER_THAN_MS = 30 * DAY_MS
DEFAULT_GRACE_SECONDS = 24 * 3600.0
BATCH = 25
METRIC_CHUNK = 2000
PAUSE_SECONDS = 0.02
# pg_try_advisory_lock key: one gc per database, whichever process or host asks.
ADVISORY_KEY = 0x6D6C_6763  # "mlgc"
KINDS = ("runs", "loggedModels", "traces", "experiments", "modelVersionFiles", "orphans")


class GcBusy(Exception):
    """Another gc or retention pass holds the lock."""


def fault_point(step: str) -> None:
    """The fault suite's kill switch: MLFLOWCTL_FAULT_AT=<step> kills this process the first time it gets here.
    Steps: gc.planned, gc.rows-deleted and gc.files-deleted (a batch of runs or logged models), gc.trace-rows-deleted,
    gc.experiment-row-deleted, gc.orphan-deleted."""
    if os.environ.get("MLFLOWCTL_FAULT_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class GcOptions:
    # None: deleted rows are not purged at all (a retention policy with traces= only).
    older_than_ms: int | None = DEFAULT_OLDER_THAN_MS
    experiment_ids: list[str] | None = None
    traces_older_than_ms: int | None = None
    orphans: bool = False
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    dry_run: bool = True
    batch: int = BATCH
    pause_seconds: float = PAUSE_SECONDS

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> GcOptions:
        """The ops endpoint's and the tool's request (camelCase, as the CLI sends it)."""
        ids = payload.get("experimentIds")
        return cls(
            older_than_ms=int(payload.get("olderThanMs", DEFAULT_OLDER_THAN_MS)),
            batch=int(payload.get("batch", BATCH)),
            experiment_ids=[str(i) for i in ids] if ids else None,
            traces_older_than_ms=int(payload["tracesOlderThanMs"])
            if payload.get("tracesOlderThanMs") is not None
            else None,
            orphans=bool(payload.get("orphans", False)),
            grace_seconds=float(payload.get("graceSeconds", DEFAULT_GRACE_SECONDS)),
            dry_run=not payload.get("yes", False),
        )


@dataclass
class Target:
    kind: str
    rows: list[Row] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # what to delete from the artifact store
    bytes: int = 0
    files: int = 0
    # The bytes the listing found under each path, for what a deletion freed.
    path_bytes: dict[str, int] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {"count": len(self.rows) or len(self.paths), "bytes": self.bytes, "files": self.files}


@dataclass
class GcPlan:
    targets: dict[str, Target]
    kept: list[str]  # directories of purged rows kept because a remaining row refers to files in them

    def view(self) -> dict[str, Any]:
        return {kind: target.view() for kind, target in self.targets.items()}


# Each file is counted once, for the first of these that takes it: an experiment's own bytes are what its runs,
# models and traces did not already account for.
TALLY_ORDER = ("runs", "loggedModels", "traces", "modelVersionFiles", "orphans", "experiments")


def _tally(listing: list[ArtifactFile], targets: dict[str, Target]) -> None:
    prefixes = [(targets[kind], set(targets[kind].paths)) for kind in TALLY_ORDER]
    for item in listing:
        for target, paths in prefixes:
            owner = covering(item.path, paths) if paths else None
            if owner is not None:
                target.bytes += item.size
                target.files += 1
                target.path_bytes[owner] = target.path_bytes.get(owner, 0) + item.size
                break


def plan_gc(catalog: Catalog, listing: list[ArtifactFile], options: GcOptions, now_ms: int) -> GcPlan:
    """What a gc with these options deletes, from one reading of the rows and one listing of the store."""
    wanted = set(options.experiment_ids) if options.experiment_ids else None

    def old_enough(row: Row, limit: int | None) -> bool:
        # As `mlflow gc`: a row deleted before MLflow recorded deletion times has none, and is left alone.
        return limit is not None and row.at_ms is not None and row.at_ms <= now_ms - limit

    def in_scope(row: Row) -> bool:
        return wanted is None or row.experiment_id in wanted

    # A deleted run that a live model version comes from stays, row and files, and so does its experiment.
    pinned = catalog.pinned_runs
    pinned_experiments = {
        row.experiment_id for row in (*catalog.live, *catalog.deleted) if row.kind == "run" and row.id in pinned
    }
    experiments = [
        row
        for row in catalog.deleted
        if row.kind == "experiment"
        and in_scope(row)
        and old_enough(row, options.older_than_ms)
        and row.id not in pinned_experiments
    ]
    purged_experiments = {row.id for row in experiments}
    # Everything in a purged experiment goes with it, whatever its own stage: MLflow refuses to delete an experiment
    # that rows still refer to.
    everything = [*catalog.live, *catalog.deleted]

    def chosen(kind: str, row_old: Callable[[Row], bool], rows: list[Row]) -> list[Row]:
        return [row for row in rows if row.kind == kind and (row.experiment_id in purged_experiments or row_old(row))]

    runs = chosen("run", lambda r: in_scope(r) and old_enough(r, options.older_than_ms), catalog.deleted)
    runs += [r for r in catalog.live if r.kind == "run" and r.experiment_id in purged_experiments]
    kept = [row.path or row.id for row in runs if row.id in pinned]
    runs = [row for row in runs if row.id not in pinned]
    models = chosen("loggedModel", lambda r: in_scope(r) and old_enough(r, options.older_than_ms), catalog.deleted)
    models += [r for r in catalog.live if r.kind == "loggedModel" and r.experiment_id in purged_experiments]
    limit = options.traces_older_than_ms
    traces = [
        row
        for row in everything
        if row.kind == "trace"
        and (
            row.experiment_id in purged_experiments or (limit is not None and in_scope(row) and old_enough(row, limit))
        )
    ]
    purged = {(row.kind, row.id) for row in (*runs, *models, *traces, *experiments)}
    remaining = catalog.claims(excluding=purged)

    holding = ancestors(remaining)  # every directory that holds (or is) a file a remaining row refers to
    targets = {kind: Target(kind) for kind in KINDS}
    for kind, rows in (("runs", runs), ("loggedModels", models), ("traces", traces), ("experiments", experiments)):
        target = targets[kind]
        target.rows = rows
        for row in rows:
            if row.path is None:
                continue
            if row.path in holding or covered(row.path, remaining):
                kept.append(row.path)
                continue
            target.paths.append(row.path)
    # Files of deleted model versions, where nothing that stays refers to them.
    version_files = targets["modelVersionFiles"]
    for row in catalog.deleted:
        if row.kind == "modelVersion" and row.path and not covered(row.path, remaining):
            if not covered(row.path, {*targets["runs"].paths, *targets["loggedModels"].paths}):
                version_files.paths.append(row.path)
    if options.orphans:
        cutoff = now_ms / 1000 - options.grace_seconds
        units = orphan_units(listing, catalog.claims(), catalog.experiments.values())
        targets["orphans"].paths = [unit.path for unit in units if unit.recognised and unit.newest < cutoff]
    for target in targets.values():
        target.paths = sorted(set(target.paths))
    _tally(listing, targets)
    return GcPlan(targets, kept)


@contextlib.contextmanager
def gc_lock(engine: sqlalchemy.engine.Engine) -> Iterator[None]:
    """One gc at a time per store, from the extension or from `mlflowctl gc` on an ops box alike: a file lock beside
    a SQLite database, an advisory lock on PostgreSQL, an application lock on SQL Server. Never waits: a busy lock
    raises GcBusy."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        path = Path(f"{engine.url.database or ''}.mlflowctl-gc.lock")
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise GcBusy("another gc or retention pass is running on this store") from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        if dialect == "postgresql":
            got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
            release = "SELECT pg_advisory_unlock(:k)"
        elif dialect == "mssql":  # untested here: no SQL Server on the test machines
            got = (
                conn.execute(
                    sqlalchemy.text(
                        "DECLARE @r int; EXEC @r = sp_getapplock @Resource = 'mlflowctl-gc', @LockMode = 'Exclusive', "
                        "@LockOwner = 'Session', @LockTimeout = 0; SELECT @r"
                    )
                ).scalar()
                or 0
            ) >= 0
            release = "EXEC sp_releaseapplock @Resource = 'mlflowctl-gc', @LockOwner = 'Session'"
        else:
            got, release = True, ""
        conn.commit()
        if not got:
            raise GcBusy("another gc or retention pass is running on this store")
        try:
            yield
        finally:
            if release:
                conn.execute(sqlalchemy.text(release), {"k": ADVISORY_KEY})
                conn.commit()


def _delete_metric_history(engine: sqlalchemy.engine.Engine, run_id: str, timing: Timing) -> None:
    """A long metric history in chunks, each its own short transaction, before MLflow deletes the run in one (a
    short one is left to MLflow: one transaction is cheaper than two)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM (SELECT 1 FROM metrics WHERE run_uuid = :r LIMIT :n) AS head"),
            {"r": run_id, "n": METRIC_CHUNK + 1},
        ).scalar()
    if (rows or 0) <= METRIC_CHUNK:
        return
    dialect = engine.dialect.name
    if dialect == "sqlite":
        statement = "DELETE FROM metrics WHERE rowid IN (SELECT rowid FROM metrics WHERE run_uuid = :r LIMIT :n)"
    elif dialect == "postgresql":
        statement = "DELETE FROM metrics WHERE ctid IN (SELECT ctid FROM metrics WHERE run_uuid = :r LIMIT :n)"
    elif dialect == "mssql":
        statement = "DELETE TOP (:n) FROM metrics WHERE run_uuid = :r"
    else:
        return

    def chunk() -> int:
        with engine.begin() as conn:
            return conn.execute(sqlalchemy.text(statement), {"r": run_id, "n": METRIC_CHUNK}).rowcount

    while timing.transaction(chunk) >= METRIC_CHUNK:
        pass


def _delete_traces(store: Any, experiment_id: str, trace_ids: list[str]) -> None:
    # MLflow 2.x names the parameter request_ids; 3.x trace_ids.
    parameters = inspect.signature(store._delete_traces).parameters
    name = "trace_ids" if "trace_ids" in parameters else "request_ids"
    store._delete_traces(experiment_id, **{name: trace_ids})


def _batches(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for at in range(0, len(rows), size):
        yield rows[at : at + size]


def run_gc(
    engine: sqlalchemy.engine.Engine,
    store: Any,
    files: ArtifactFiles,
    options: GcOptions,
    now_ms: int | None = None,
    yield_to: Callable[[], Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yields events: "plan" (what would go, per kind), "progress" while it deletes, then "result". A dry run yields
    the plan and the result and changes nothing. The caller holds gc_lock. `yield_to` is called after each
    transaction (the extension waits there for the requests in flight)."""
    started = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    catalog = read_catalog(engine, files)
    listing = list(files.walk())
    plan = plan_gc(catalog, listing, options, now_ms)
    yield {"event": "plan", "dryRun": options.dry_run, "kinds": plan.view(), "kept": plan.kept[:50]}
    done = {kind: {"count": 0, "files": 0} for kind in KINDS}
    done_bytes = [0]
    timing = Timing(yield_to)
    if not options.dry_run:
        fault_point("gc.planned")
        yield from _purge(engine, store, files, plan, options, done, timing, done_bytes)
    yield {
        "event": "result",
        "dryRun": options.dry_run,
        "kinds": plan.view(),
        "deleted": done,
        "bytesFreed": done_bytes[0],
        "kept": len(plan.kept),
        "seconds": round(time.monotonic() - started, 3),
        # The longest single transaction: how long gc held the database's write lock at most.
        "longestTransactionSeconds": round(timing.longest, 3),
    }


class Timing:
    """Times each transaction gc makes (the longest is reported) and lets the server's requests go after each."""

    def __init__(self, yield_to: Callable[[], Any] | None) -> None:
        self.longest = 0.0
        self._yield_to = yield_to

    def transaction(self, work: Callable[..., Any], *args: Any) -> Any:
        started = time.monotonic()
        try:
            return work(*args)
        finally:
            self.longest = max(self.longest, time.monotonic() - started)
            if self._yield_to is not None:
                self._yield_to()


def _purge(
    engine: sqlalchemy.engine.Engine,
    store: Any,
    files: ArtifactFiles,
    plan: GcPlan,
    options: GcOptions,
    done: dict[str, dict[str, int]],
    timing: Timing,
    freed: list[int],
) -> Iterator[dict[str, Any]]:
    targets = plan.targets

    def remove(kind: str, path: str) -> None:
        done[kind]["files"] += files.delete(path)
        freed[0] += targets[kind].path_bytes.get(path, 0)

    def delete_files(kind: str, rows: list[Row]) -> None:
        owned = set(targets[kind].paths)
        for row in rows:
            if row.path in owned:
                remove(kind, row.path)

    def delete_run(row: Row) -> None:
        _delete_metric_history(engine, row.id, timing)
        timing.transaction(store._hard_delete_run, row.id)

    steps: list[tuple[str, Callable[[Row], Any]]] = [
        ("runs", delete_run),
        ("loggedModels", lambda row: timing.transaction(store._hard_delete_logged_model, row.id)),
    ]
    for kind, delete_row in steps:
        for batch in _batches(targets[kind].rows, options.batch):
            for row in batch:
                delete_row(row)
                done[kind]["count"] += 1
            fault_point("gc.rows-deleted")
            delete_files(kind, batch)
            fault_point("gc.files-deleted")
            yield {"event": "progress", "kind": kind, "done": done[kind]["count"], "of": len(targets[kind].rows)}
            time.sleep(options.pause_seconds)
    by_experiment: dict[str, list[Row]] = {}
    for row in targets["traces"].rows:
        by_experiment.setdefault(row.experiment_id or "", []).append(row)
    for experiment_id, rows in by_experiment.items():
        for batch in _batches(rows, options.batch * 4):
            timing.transaction(_delete_traces, store, experiment_id, [row.id for row in batch])
            done["traces"]["count"] += len(batch)
            fault_point("gc.trace-rows-deleted")
            delete_files("traces", batch)
            yield {
                "event": "progress",
                "kind": "traces",
                "done": done["traces"]["count"],
                "of": len(targets["traces"].rows),
            }
            time.sleep(options.pause_seconds)
    for row in targets["experiments"].rows:
        timing.transaction(store._hard_delete_experiment, row.id)
        done["experiments"]["count"] += 1
        fault_point("gc.experiment-row-deleted")
        # SQLite may give the id, and so the location, to a new experiment at once: its directory then stays, and
        # what the old one left in it is an orphan for the orphan pass.
        if row.path in set(targets["experiments"].paths) and not _location_in_use(engine, files, row.path):
            remove("experiments", row.path)
    yield {
        "event": "progress",
        "kind": "experiments",
        "done": done["experiments"]["count"],
        "of": len(targets["experiments"].rows),
    }
    for path in targets["modelVersionFiles"].paths:
        remove("modelVersionFiles", path)
        done["modelVersionFiles"]["count"] += 1
    if targets["orphans"].paths:
        # Checked again against the rows as they are now: a row created since the plan (SQLite may give a new
        # experiment the id, and so the directory, of a purged one) keeps its directory, and a directory written to
        # since the plan is an upload in flight.
        fresh = read_catalog(engine, files)
        claims = fresh.claims()
        holding = ancestors({*claims, *(p for p in fresh.experiments.values() if p)})
        for path in targets["orphans"].paths:
            if path in holding or covered(path, claims) or _recently_changed(files, path, options.grace_seconds):
                continue
            remove("orphans", path)
            done["orphans"]["count"] += 1
            fault_point("gc.orphan-deleted")
        yield {
            "event": "progress",
            "kind": "orphans",
            "done": done["orphans"]["count"],
            "of": len(targets["orphans"].paths),
        }


def _location_in_use(engine: sqlalchemy.engine.Engine, files: ArtifactFiles, path: str) -> bool:
    with engine.connect() as conn:
        locations = [row[0] for row in conn.execute(sqlalchemy.text("SELECT artifact_location FROM experiments"))]
    return any(files.relative(location) == path for location in locations)


def _recently_changed(files: ArtifactFiles, path: str, grace_seconds: float) -> bool:
    cutoff = time.time() - grace_seconds
    return any(item.modified >= cutoff for item in files.walk(path))
