"""The MLflow requests this process is serving, so that background work (gc, retention) lets them go first: after
each of its transactions it waits until no request is in flight (for a bounded time). A writer then finds the
database's write lock free when it asks, instead of sleeping in SQLite's busy handler while gc takes the lock again.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Iterator


class Traffic:
    def __init__(self) -> None:
        self._in_flight = 0
        self._changed = threading.Condition()

    def enter(self) -> None:
        with self._changed:
            self._in_flight += 1

    def leave(self) -> None:
        with self._changed:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._changed.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_quiet(self, timeout: float) -> bool:
        """Returns once no request is in flight (True), or after `timeout` seconds regardless (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)


class CountedBody:
    """A WSGI response body that counts as in flight until the host closes it (a streamed body included)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close: Any = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if self._done is not None:
                done, self._done = self._done, None
                done()
