"""Replication while the server serves (MLFLOWCTL_REPLICA_URL): which process replicates, the threads that keep WAL
shipping on its own cadence while snapshots, maintenance and artifacts take their time, and what /_mlflowctl/status
reports. Started by server.build_app.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

from .logs import log_event, redact
from .replica_layout import ReplicaError, ReplicaForeign
from .replica_store import STATIC_CREDENTIALS, replica_credentials
from .replicator import Replicator
from .settings import REPLICA_INTERVAL as DEFAULT_INTERVAL
from .settings import REPLICA_RETENTION as DEFAULT_RETENTION
from .settings import REPLICA_SNAPSHOT_INTERVAL as DEFAULT_SNAPSHOT_INTERVAL
from .settings import ReplicaSettings

LOCK_RETRY_SECONDS = 5.0
# Maintenance (compaction, retention, sweeps) runs this often, on the slow thread.
MAINTENANCE_SECONDS = 30.0
# A snapshot that failed is tried again after this long.
SNAPSHOT_RETRY_SECONDS = 30.0
# A round that has waited this long on the replica is reported as stalled, as an error.
STALL_SECONDS = 30.0
# The artifact thread wakes this often when nothing was uploaded.
ARTIFACT_WAKE_SECONDS = 1.0


class ReplicationService:
    """A thread per server process tries `<state dir>/replica.lock` (a non-blocking flock, released by the kernel when
    its process dies); the holder replicates with three threads, the others wait to take over:
    - the WAL thread ships a round every MLFLOWCTL_REPLICA_INTERVAL seconds (default 1), whatever else runs;
    - the slow thread takes snapshots (when a generation is needed, and every MLFLOWCTL_REPLICA_SNAPSHOT_INTERVAL)
      from a read transaction of its own while the WAL thread ships on, and runs maintenance;
    - the artifact thread ships what clients upload at once, and the rest after a scan.
    `status()` is what /_mlflowctl/status reports."""

    def __init__(
        self,
        database: Path,
        replica_url: str,
        state_dir: Path,
        interval: float = DEFAULT_INTERVAL,
        artifacts: Path | None = None,
        options: dict | None = None,
        stall_seconds: float = STALL_SECONDS,
    ):
        self.database = Path(database)
        self.stall_seconds = stall_seconds
        self.replica_url = replica_url
        self.state_dir = Path(state_dir)
        self.interval = interval
        self.artifacts = artifacts
        self.options = options or {}
        self.lock = threading.Lock()
        self.state: dict = {
            "url": redact(replica_url),
            "role": "starting",
            "generation": None,
            "walIndex": None,
            "offset": None,
            "lastShippedAt": None,
            "lastRoundAt": None,
            "shippedFrames": 0,
            "lagSeconds": None,
            "lastError": None,
            "refusedBecause": None,
            "resumed": None,
            "snapshotTakenAt": None,
            "checkpoints": 0,
            "artifactsShipped": 0,
            "retentionSeconds": self.options.get("retention", DEFAULT_RETENTION),
            "snapshotIntervalSeconds": self.options.get("snapshot_interval", DEFAULT_SNAPSHOT_INTERVAL),
            "credentials": None,
            "snapshotStartedAt": None,
            "walBytes": None,
            "artifactsPending": 0,
            "lastNotice": None,
            "lastNoticeAt": None,
            "stalledSeconds": None,
        }
        self._round_started: float | None = None
        self.replicator: Replicator | None = None
        self.stop_event = threading.Event()
        self.snapshot_wanted = threading.Event()
        self.thread: threading.Thread | None = None

    def status(self) -> dict:
        with self.lock:
            state = dict(self.state)
            started = self._round_started
        now = time.time()
        if state["role"] == "replicating" and state["lastRoundAt"] is not None:
            # Lag: how long ago the last round that found the replica caught up began (commits after it are unshipped).
            state["lagSeconds"] = round(max(0.0, now - state["lastRoundAt"]), 3)
        if started is not None and now - started >= self.stall_seconds:
            # A frozen replica answers nothing at all: the round waiting on it says so as an error, not only as lag.
            state["stalledSeconds"] = round(now - started, 1)
            state["lastError"] = (
                f"the replica has not answered for {now - started:.0f} s (a round is still waiting on it)"
            )
        if self.replicator:
            state["walBytes"] = self.replicator.wal.size()
            state["artifactsPending"] = self.replicator.shipper.pending if self.replicator.shipper else 0
        return state

    def _set(self, **fields) -> None:
        with self.lock:
            self.state.update(fields)

    def artifact_written(self, relative: str) -> None:
        """MLflow wrote an artifact through its proxy (the upload was answered): ship it now."""
        replicator = self.replicator
        if replicator and replicator.shipper:
            replicator.shipper.notify(relative)

    def start(self) -> None:
        scheme = self.replica_url.split("://")[0]
        if scheme in STATIC_CREDENTIALS:
            self._set(credentials=replica_credentials(scheme, os.environ))
        self.thread = threading.Thread(target=self._run, name="mlflowctl-replica", daemon=True)
        self.thread.start()
        # A graceful stop (SIGTERM on a redeploy or restart) ships a last round first, so the next process's
        # generation begins where this one's ends.
        atexit.register(self.close)

    def close(self) -> None:
        self.stop_event.set()
        self.snapshot_wanted.set()
        if self.thread:
            self.thread.join(timeout=10)

    def _failed(self, part: str, exc: BaseException) -> None:
        reason = redact(f"{type(exc).__name__}: {exc}")
        self._set(lastError=f"{part}: {reason}" if part != "round" else reason)
        log_event(f"replica.{part}_failed", f"replication ({part}) failed; retrying", logging.WARNING, reason=reason)

    def _wal_loop(self, replicator: Replicator) -> None:
        while not self.stop_event.is_set():
            began = time.time()
            with self.lock:
                self._round_started = began
            try:
                result = replicator.ship_wal()
                release_wal_hold()  # the first round resumed (or began) the generation under our own pins
                fields = dict(
                    walIndex=replicator.wal_index,
                    offset=replicator.offset,
                    resumed=replicator.resumed,
                    snapshotTakenAt=replicator.snapshot_taken_at or None,
                    checkpoints=replicator.checkpoints,
                    lastNotice=replicator.notice,
                    lastNoticeAt=replicator.notice_at,
                )
                if replicator.generation is not None:
                    fields.update(generation=replicator.generation, lastRoundAt=began, lastError=None)
                if result["frames"]:
                    fields.update(lastShippedAt=began, shippedFrames=self.state["shippedFrames"] + result["frames"])
                self._set(**fields)
                if replicator.need_snapshot:
                    self.snapshot_wanted.set()
            except ReplicaForeign:
                raise
            except Exception as exc:  # a full disk, an unreachable replica: reported, retried next round
                self._failed("round", exc)
                replicator.after_failure()
                self._set(lastNotice=replicator.notice, lastNoticeAt=replicator.notice_at)
            finally:
                with self.lock:
                    self._round_started = None
            self.stop_event.wait(self.interval)

    def _slow_loop(self, replicator: Replicator) -> None:
        next_maintenance = time.time() + MAINTENANCE_SECONDS
        while not self.stop_event.is_set():
            self.snapshot_wanted.wait(min(5.0, max(0.0, next_maintenance - time.time())))
            self.snapshot_wanted.clear()
            if self.stop_event.is_set():
                return
            try:
                if (replicator.need_snapshot or replicator.snapshot_due()) and replicator.pending is None:
                    self._set(snapshotStartedAt=time.time())
                    plan = replicator.begin_snapshot()
                    replicator.offer(replicator.upload_snapshot(plan))
            except Exception as exc:
                self._failed("snapshot", exc)
                self.stop_event.wait(SNAPSHOT_RETRY_SECONDS)
            finally:
                self._set(snapshotStartedAt=None)
            if time.time() >= next_maintenance:
                next_maintenance = time.time() + MAINTENANCE_SECONDS
                try:
                    replicator.maintain()
                    replicator.store.sweep_partials(time.time() - replicator.delete_grace)
                except Exception as exc:
                    self._failed("maintenance", exc)

    def _artifact_loop(self, replicator: Replicator) -> None:
        shipper = replicator.shipper
        while shipper and not self.stop_event.is_set():
            shipper.wake.wait(ARTIFACT_WAKE_SECONDS)
            shipper.wake.clear()
            try:
                shipper.ship()
                self._set(artifactsShipped=shipper.shipped_count)
            except Exception as exc:
                self._failed("artifacts", exc)

    def _run(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "replica.lock", "a+") as handle:
            while not self.stop_event.is_set():
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self._set(role="standby")
                    release_wal_hold()  # another process replicates: its pin is the one that counts
                    self.stop_event.wait(LOCK_RETRY_SECONDS)
            if self.stop_event.is_set():
                return
            log_event(
                "replica.started",
                "replicating the SQLite store",
                replica=redact(self.replica_url),
                interval_s=self.interval,
            )
            replicator = None
            try:
                replicator = Replicator(
                    self.database, self.replica_url, scratch=self.state_dir, artifacts=self.artifacts, **self.options
                )
                self.replicator = replicator
                self._set(role="replicating")
                helpers = [
                    threading.Thread(target=loop, args=(replicator,), name=f"mlflowctl-replica-{name}", daemon=True)
                    for name, loop in (("snapshots", self._slow_loop), ("artifacts", self._artifact_loop))
                ]
                for helper in helpers:
                    helper.start()
                self._wal_loop(replicator)
                for helper in helpers:
                    helper.join(timeout=10)
                self._last_round(replicator)
                keep_wal_past_exit(self.database)
            except Exception as exc:  # WAL mode refused, an SDK missing, another database's replica: said in the status
                reason = str(exc) if isinstance(exc, ReplicaError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ImportError):
                    scheme = self.replica_url.split("://")[0]
                    reason = f"{scheme}:// replicas need {exc.name}, which this bundle does not install: render it with `mlflowctl init --replica-store {scheme}`"
                self._set(role="refused", refusedBecause=redact(reason))
                log_event("replica.refused", "replication refused", logging.WARNING, reason=redact(reason))
                self.stop_event.set()
            finally:
                release_wal_hold()
                if replicator:
                    replicator.close()

    def _last_round(self, replicator: Replicator) -> None:
        """A graceful stop ships what is committed and what was uploaded, so the next process resumes from there."""
        try:
            replicator.ship_wal()
            if replicator.shipper:
                replicator.shipper.ship_notified()
        except Exception as exc:  # stopping anyway: said in the log
            log_event(
                "replica.round_failed",
                "the last round before stopping failed",
                logging.WARNING,
                reason=redact(f"{type(exc).__name__}: {exc}"),
            )


NETWORK_FILESYSTEMS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "9p",
    "afs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "lustre",
    "gpfs",
    "fuse.s3fs",
    "fuse.gcsfuse",
    "fuse.rclone",
    "virtiofs",
}


def network_filesystem(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the network file system `path` lives on, or None (a local disk, or no /proc). From the mount whose
    mount point is the longest prefix of the path (/proc/self/mountinfo: field 5 the mount point, with spaces as \\040;
    the file system type after the " - " separator)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = str(Path(path).resolve())
    best, best_type = "", None
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, best_type = point, rest.split()[0]
    return best_type if best_type in NETWORK_FILESYSTEMS else None


# The first connection this process opens to the store, with a read transaction pinning its WAL (hold_wal).
_HOLD: sqlite3.Connection | None = None
# A restart of the WAL truncates the file back to this size (PRAGMA journal_size_limit, about twice what a WAL holds
# between the checkpoints SQLite runs on its own): a WAL that grew during an
# outage shrinks again once it is shipped.
JOURNAL_SIZE_LIMIT = 8 << 20


def hold_wal(storage, settings: ReplicaSettings | None) -> None:
    """Opens this process's first connection to the SQLite store, before the start-up steps that open and close
    their own, and pins its WAL with a read transaction until the replicator has resumed (release_wal_hold).

    A WAL that outlived its server (a SIGKILL, or a stop) holds commits the replica may already have, and its
    salts and checksum chain are what lets a new process resume the generation. When the last connection to a
    database closes, SQLite checkpoints the WAL into it and deletes it (and a checkpoint with no reader lets the
    next writer restart it): the schema check at start-up was that last connection, so no restart ever resumed.
    The connection stays open for the life of the process; only the pin goes."""
    global _HOLD
    if _HOLD is not None or settings is None or storage.mode != "local" or not storage.sqlite_path:
        return
    _limit_wal_size()
    if not Path(storage.sqlite_path).exists():
        return  # a first start: nothing to resume
    _HOLD = _open_hold(Path(storage.sqlite_path), pin=True)


def _open_hold(database: Path, pin: bool) -> sqlite3.Connection | None:
    """A connection that keeps the WAL through the process's exit: it has read the database (in WAL mode a connection
    keeps its shared lock on the file from its first read until it closes, and the last connection to close is the one
    that checkpoints and deletes the WAL), and it is never closed, not even by the interpreter's own clean-up at exit
    (a server that exits through sys.exit, as gunicorn's workers do, would otherwise close it last). The OS drops it
    with the process, as after a kill. `pin`: and a read transaction, so that no checkpoint empties the WAL either."""
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        if pin:
            connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        connection.close()
        return None
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(connection))  # one reference nobody releases: never deallocated
    return connection


def keep_wal_past_exit(database: Path) -> None:
    """Before a graceful stop lets go of the replicator's connections: the WAL stays for the next process to resume."""
    global _HOLD
    if _HOLD is None and database.exists():
        _HOLD = _open_hold(database, pin=False)


def release_wal_hold() -> None:
    """Ends hold_wal's read transaction (the replicator pins on its own now, or another process replicates)."""
    if _HOLD is not None and _HOLD.in_transaction:
        _HOLD.execute("COMMIT")


def _limit_wal_size() -> None:
    """Every SQLite connection SQLAlchemy opens in this process (MLflow's) truncates the WAL to JOURNAL_SIZE_LIMIT when
    it restarts it: the writer that restarts the WAL is the one whose limit counts, and those are MLflow's."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(connection, _record) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")

    if not event.contains(Engine, "connect", on_connect):
        event.listen(Engine, "connect", on_connect)


def start_replication(storage, settings: ReplicaSettings | None) -> ReplicationService | None:
    """Starts replication when it is configured (settings.load_replica_settings). Local storage (the SQLite file)
    only. WAL mode is set here, before MLflow opens the store (it is persistent on the file; MLflow itself leaves the
    rollback journal)."""
    if settings is None:
        return None
    url, interval, refused = settings.url, settings.interval, settings.invalid
    options = settings.replicator_options()  # the defaults when a value was refused
    artifacts = (
        Path(storage.artifacts_destination) if storage.mode == "local" and storage.artifacts_destination else None
    )
    service = ReplicationService(
        storage.sqlite_path or Path("-"), url, storage.state_dir or Path("-"), interval, artifacts, options
    )
    if not storage.sqlite_path or not storage.state_dir:
        refused = "replication covers local storage (a SQLite file in the data directory) only"
    elif network := network_filesystem(storage.sqlite_path.parent):
        # sqlite.org/wal.html: "WAL does not work over a network filesystem" (its index lives in shared memory).
        refused = (
            f"the data directory is on {network}, a network file system, where SQLite's WAL (which replication "
            "needs) does not work: put the content's data directory on a local disk, or unset MLFLOWCTL_REPLICA_URL"
        )
    if refused:
        service._set(role="refused", refusedBecause=refused)
        log_event("replica.refused", "replication refused", logging.WARNING, reason=refused)
        return service
    connection = sqlite3.connect(storage.sqlite_path)
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        connection.close()
    if mode != "wal":
        service._set(
            role="refused",
            refusedBecause=f"the SQLite file cannot use WAL mode (journal mode {mode}; a network file system?)",
        )
        log_event("replica.refused", "replication refused", logging.WARNING, reason=service.state["refusedBecause"])
        return service
    service.start()
    return service
