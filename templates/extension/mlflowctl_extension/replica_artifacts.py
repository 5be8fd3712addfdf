"""The artifacts of a replicated store, shipped to the replica under artifacts/<path>, once each.

Two ways in: a file MLflow wrote through its artifact proxy (the extension sees the upload's answer and calls
`notify`) is complete when the client is told so, and ships at once, before the backlog; anything else (a backlog at
the start, files written another way) is found by a scan and ships once its size and mtime held still for one scan
(MLflow may still be writing it). The scan yields to notified files between two files, so a large backlog never
delays what clients just uploaded.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path


class ArtifactShipper:
    def __init__(self, store, root: Path, now, interval: float) -> None:
        self.store, self.root, self.now, self.interval = store, Path(root), now, interval
        self.shipped_count = 0
        self._notified: deque[str] = deque()
        self.wake = threading.Event()
        self._shipped: dict[str, tuple[int, int | None]] | None = None
        self._previous_scan: dict[str, tuple[int, int]] = {}
        self._next_scan = 0.0
        self._lock = threading.Lock()

    def notify(self, relative: str) -> None:
        """A file MLflow finished writing (its upload was answered): shipped ahead of anything else."""
        self._notified.append(relative)
        self.wake.set()

    @property
    def pending(self) -> int:
        return len(self._notified)

    def _known(self) -> dict[str, tuple[int, int | None]]:
        if self._shipped is None:
            self._shipped = {key[len("artifacts/") :]: (size, None) for key, size in self.store.list("artifacts/")}
        return self._shipped

    def _put(self, relative: str, size: int, mtime: int) -> None:
        self.store.put_file(f"artifacts/{relative}", self.root / relative)
        self._known()[relative] = (size, mtime)
        self.shipped_count += 1

    def ship_notified(self) -> int:
        shipped = 0
        with self._lock:
            while self._notified:
                relative = self._notified.popleft()
                path = self.root / relative
                # Only files under the root, as the proxy wrote them; a name that climbs out is not ours to ship.
                if ".." in Path(relative).parts or path.is_symlink():
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                known = self._known().get(relative)
                if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
                    continue
                self._put(relative, stat.st_size, stat.st_mtime_ns)
                shipped += 1
        return shipped

    def scan(self) -> int:
        """Ships files not shipped yet (or changed) that held still since the previous scan."""
        current: dict[str, tuple[int, int]] = {}
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = Path(directory) / name
                try:
                    stat = path.lstat()
                except FileNotFoundError:
                    continue
                if path.is_symlink():
                    continue
                current[path.relative_to(self.root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
        shipped = 0
        for relative, (size, mtime) in sorted(current.items()):
            if self._notified:
                shipped += self.ship_notified()
            with self._lock:
                known = self._known().get(relative)
                if known and known[0] == size and known[1] in (None, mtime):
                    self._known()[relative] = (size, mtime)
                    continue
                if self._previous_scan.get(relative) != (size, mtime):
                    continue  # new or still changing: next scan
                self._put(relative, size, mtime)
                shipped += 1
        self._previous_scan = current
        return shipped

    def ship(self) -> int:
        """Notified files now, and a scan when one is due (every `interval` seconds)."""
        shipped = self.ship_notified()
        if self.now() >= self._next_scan:
            self._next_scan = self.now() + self.interval
            shipped += self.scan()
        return shipped
