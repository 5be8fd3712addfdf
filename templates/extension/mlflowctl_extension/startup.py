"""The extension's start-up state, while its steps run on a thread of their own.

Connect kills a process that has not answered HTTP within the content's init_timeout (60 s by default), and a
schema migration of a large store can take longer than that. So the process answers at once: /health and every
MLflow route answer 503 (with Retry-After) and say what is happening, until the start-up steps (configuration,
recovery, migration under its lock, replication, MLflow's app) are done. A start that is refused keeps answering
503 with the reason instead of exiting, so that the reason reaches whoever deploys or diagnoses it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

# How long clients are asked to wait before retrying while the extension starts or migrates.
RETRY_AFTER_SECONDS = 5


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Startup:
    """state: starting | migrating | ready | refused. Thread-safe; `wait()` returns once ready or refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._state = "starting"
        self._since = time.time()
        self._migration: dict[str, Any] | None = None
        self._error: dict[str, str] | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def migrating(
        self, *, step: int, of: int, revision: str, title: str | None, from_revision: str | None, head: str
    ) -> None:
        """A migration step begins (called before each revision is applied)."""
        with self._lock:
            if self._migration is None:
                self._migration = {"from": from_revision, "to": head, "startedAt": _utc(time.time())}
            self._migration.update(step=step, of=of, revision=revision, title=title)
            self._state = "migrating"

    def migrated(self) -> None:
        """The schema is current; MLflow's app is still to load."""
        with self._lock:
            self._state = "starting"
            if self._migration is not None:
                self._migration["finishedAt"] = _utc(time.time())

    def ready(self) -> None:
        with self._lock:
            self._state = "ready"
        self._done.set()

    def refuse(self, code: str, message: str) -> None:
        with self._lock:
            self._state = "refused"
            self._error = {"code": code, "message": message}
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once ready; False when refused (or still starting after `timeout`)."""
        self._done.wait(timeout)
        return self.state == "ready"

    def view(self) -> dict[str, Any]:
        """What /health, the ops status and the 503 answers report."""
        with self._lock:
            return {
                "state": self._state,
                "since": _utc(self._since),
                "migration": dict(self._migration) if self._migration else None,
                "error": dict(self._error) if self._error else None,
            }

    def unavailable(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """The answer to any request that is not for the ops endpoint while the extension is not ready."""
        view = self.view()
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Retry-After", str(RETRY_AFTER_SECONDS)),
        ]
        if path.rstrip("/") == "/health":
            return 503, headers, json.dumps({"status": "unavailable", **view}).encode()
        return (
            503,
            headers,
            json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": describe_state(view)}).encode(),
        )


def describe_state(view: dict[str, Any]) -> str:
    """One sentence for people: what the extension is doing, or why it refused."""
    if view["state"] == "refused" and view["error"]:
        return f"The MLflow extension refused to start: {view['error']['message']}"
    migration = view.get("migration")
    if view["state"] == "migrating" and migration:
        return (
            f"MLflow is migrating its database schema from {migration['from'] or 'nothing'} to {migration['to']} "
            f"(step {migration['step']} of {migration['of']}, since {migration['startedAt']}); retry shortly."
        )
    return "MLflow is starting; retry shortly."
