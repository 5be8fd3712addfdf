"""The extension's side of `storage report` and `gc` (GET /_mlflowctl/storage, POST /_mlflowctl/gc) and the
retention that runs by itself (MLFLOWCTL_RETENTION). The extension holds the database and the artifact store's
credentials in every storage mode, so it computes both; an ops box never needs them.

The last gc or retention pass is kept in `<state dir>/gc-last.json` (in memory without a data directory), so that
every process of the deployment, the status and `doctor` report the same one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from .artifact_files import ArtifactFiles, open_artifact_files
from .logs import log_event, redact
from .settings import RetentionSettings, StorageConfig
from .storage_gc import GcBusy, GcOptions, gc_lock, run_gc
from .storage_report import build_report
from .traffic import Traffic

LAST_FILE = "gc-last.json"
# How long gc waits, after each of its transactions, for the requests in flight to finish: under a steady stream of
# writes it still deletes a few rows a second.
YIELD_SECONDS = 0.25
# The first retention pass waits this long after the start (or `every`, if shorter): a restart loop must not purge.
FIRST_PASS_SECONDS = 600.0


class StorageService:
    def __init__(
        self,
        storage: StorageConfig,
        engine: sqlalchemy.engine.Engine,
        tracking_store: Callable[[], Any],
        retention: RetentionSettings | None = None,
        files: ArtifactFiles | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        self.storage = storage
        self.engine = engine
        self._store = tracking_store
        self.retention = retention
        self._files = files
        self.traffic = traffic
        self._last: dict[str, Any] | None = None
        self._running = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    @property
    def files(self) -> ArtifactFiles:
        if self._files is None:
            self._files = open_artifact_files(self.storage.artifacts_destination)
        return self._files

    def _last_path(self) -> Path | None:
        return self.storage.state_dir / LAST_FILE if self.storage.state_dir else None

    def last(self) -> dict[str, Any] | None:
        path = self._last_path()
        if path is not None:
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return self._last
        return self._last

    def _record(self, entry: dict[str, Any]) -> None:
        self._last = entry
        path = self._last_path()
        if path is None:
            return
        temporary = path.with_name(path.name + ".partial")
        temporary.write_text(json.dumps(entry))
        os.replace(temporary, path)

    def status(self) -> dict[str, Any]:
        """What /_mlflowctl/status reports: the policy, the last pass and what waits for one."""
        retention = self.retention
        return {
            "retention": None
            if retention is None
            else {"policy": retention.text, "invalid": retention.invalid, "everySeconds": retention.every},
            "last": self.last(),
            "pending": self.pending(),
        }

    def pending(self) -> dict[str, int] | None:
        """Deleted experiments and runs waiting for a gc: counts over the small tables, never metrics."""
        try:
            with self.engine.connect() as conn:
                runs = conn.execute(sqlalchemy.text("SELECT count(*) FROM runs WHERE lifecycle_stage = 'deleted'"))
                experiments = conn.execute(
                    sqlalchemy.text("SELECT count(*) FROM experiments WHERE lifecycle_stage = 'deleted'")
                )
                return {"runs": int(runs.scalar() or 0), "experiments": int(experiments.scalar() or 0)}
        except SQLAlchemyError:
            return None

    def report(self) -> dict[str, Any]:
        return {**build_report(self.engine, self.files), "gc": self.status()}

    def gc(self, options: GcOptions, trigger: str = "gc") -> GcRun:
        """Takes the lock now (GcBusy when another gc holds it), then runs as its events are read."""
        hold = contextlib.ExitStack()
        hold.enter_context(gc_lock(self.engine))
        return GcRun(self, options, trigger, hold)

    def _events(self, options: GcOptions, trigger: str) -> Generator[dict[str, Any], None, None]:
        started = time.time()
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            traffic = self.traffic
            # After each transaction, the requests this process serves go first (for at most YIELD_SECONDS).
            yield_to = (lambda: traffic.wait_quiet(YIELD_SECONDS)) if traffic is not None else None
            for event in run_gc(self.engine, self._store(), self.files, options, yield_to=yield_to):
                if event["event"] == "result":
                    result = event
                yield event
        except GeneratorExit:
            error = "stopped: the client went away between two batches"
            raise
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            yield {"event": "error", "message": error}
        finally:
            if not options.dry_run or error:
                self._record(
                    {
                        "trigger": trigger,
                        "startedAt": _iso(started),
                        "finishedAt": _iso(time.time()),
                        "ok": error is None and result is not None,
                        "error": error,
                        "deleted": result["deleted"] if result else None,
                        "bytesFreed": result["bytesFreed"] if result else None,
                    }
                )

    def start_retention(self) -> None:
        if self.retention is None or self.retention.invalid:
            if self.retention is not None:
                log_event("retention.refused", self.retention.invalid or "", logging.ERROR)
            return
        self.thread = threading.Thread(target=self._retain, name="mlflowctl-retention", daemon=True)
        self.thread.start()

    def _retain(self) -> None:
        policy = self.retention
        assert policy is not None
        wait = min(FIRST_PASS_SECONDS, policy.every)
        while not self.stop.wait(wait):
            wait = policy.every
            last = self.last()
            if last and last.get("trigger") == "retention" and last.get("finishedAt"):
                age = time.time() - _epoch(last["finishedAt"])
                if age < policy.every:
                    wait = policy.every - age  # another process (or this one before a restart) did it
                    continue
            options = GcOptions(
                older_than_ms=int(policy.deleted * 1000) if policy.deleted is not None else None,
                traces_older_than_ms=int(policy.traces * 1000) if policy.traces is not None else None,
                orphans=policy.orphans is not None,
                grace_seconds=policy.orphans or 0.0,
                dry_run=False,
            )
            try:
                for event in self.gc(options, trigger="retention"):
                    if event["event"] == "result":
                        log_event("retention.done", "retention pass done", deleted=event["deleted"])
                    elif event["event"] == "error":
                        log_event("retention.failed", event["message"], logging.ERROR)
            except GcBusy:
                log_event("retention.skipped", "another gc or retention pass holds the lock")
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log_event("retention.failed", redact(f"{type(exc).__name__}: {exc}"), logging.ERROR)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _epoch(iso: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


class GcRun:
    """A gc's events, holding the lock until they are all read or the reader closes it (a WSGI host closes the body
    of a response whose client went away, even one it never started to read)."""

    def __init__(self, service: StorageService, options: GcOptions, trigger: str, hold: contextlib.ExitStack) -> None:
        self._events = service._events(options, trigger)
        self._hold = hold

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._events
        finally:
            self.close()

    def close(self) -> None:
        self._events.close()
        self._hold.close()
