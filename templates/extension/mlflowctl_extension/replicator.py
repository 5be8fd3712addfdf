"""Ships the database's committed WAL frames to a replica: the database side of replication (pins, checkpoints, where the
WAL was read up to), one segment at a time, and the snapshots that start generations (docs/design/replication.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .logs import log_event
from .replica_artifacts import ArtifactShipper
from .replica_layout import (
    META_KEY,
    REPLICA_FORMAT,
    ReplicaError,
    ReplicaForeign,
    database_identity,
    generation_id,
    generation_key,
    generations,
    read_meta,
    segment_keys,
    segment_name,
)
from .replica_maintenance import apply_retention, compact, sweep_merged
from .replica_store import open_store
from .settings import REPLICA_DELETE_GRACE as DELETE_GRACE_SECONDS
from .settings import REPLICA_MAX_WAL_BYTES as DEFAULT_MAX_WAL_BYTES
from .settings import REPLICA_RETENTION as DEFAULT_RETENTION
from .settings import REPLICA_SNAPSHOT_INTERVAL as DEFAULT_SNAPSHOT_INTERVAL
from .wal import FRAME_HEADER, WAL_HEADER, WalFile, WalHeader, committed_frames, last_commit_within

# Like Litestream's MinCheckpointPageN: past this many frames in the WAL the replicator restarts it itself.
CHECKPOINT_FRAMES = 1000
DEFAULT_ARTIFACT_INTERVAL = 5.0
# Compaction: once this many segments older than a minute wait, consecutive ones of a WAL index are merged (see
# replica_maintenance.compact).
COMPACT_SEGMENTS = 300
# A segment carries at most this many bytes of frames (more only when one transaction is larger): a backlog after an
# outage ships in pieces, and memory holds one piece, not the backlog.
MAX_SEGMENT_BYTES = 16 << 20
# How often the round checks that its generation still exists in the replica (a bucket lifecycle rule, a deletion).
VERIFY_SECONDS = 10.0


@dataclass(frozen=True)
class Position:
    """Where the WAL was shipped up to: its salts (None before there is a WAL), the byte offset after the last
    shipped commit frame, and SQLite's checksum chain there."""

    salts: tuple[int, int] | None
    offset: int
    chain: tuple[int, int]
    page_size: int = 4096


@dataclass
class SnapshotPlan:
    """A snapshot being taken: its generation, the WAL position it matches, and the read transaction that holds that
    state (and keeps the WAL from restarting past it) until the generation is adopted."""

    generation: str
    taken_at: float
    position: Position
    connection: sqlite3.Connection
    sha256: str = ""
    size: int = 0

    def release(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("COMMIT")
        self.connection.close()


class _Discontinuity(Exception):
    """The WAL does not continue what was shipped (restarted more than once between rounds, or replaced)."""


class Replicator:
    """Ships the database's committed WAL frames to a replica (a directory or an object store), and its artifacts.

    No frame may be overwritten before it is shipped. SQLite restarts the WAL (new salts, writing from its start)
    only once a checkpoint has copied every frame into the database and no reader still reads from the WAL, and a
    checkpoint cannot copy frames past the read mark of an open read transaction. So the replicator always holds a
    read transaction (a pin) on one of two connections, and moves it forward each round by pinning the other
    connection before it lets the first go: between rounds the WAL can only restart after every frame up to the pin
    was shipped. A pin taken when every frame was already copied back reads the database file, not the WAL, and then
    protects nothing; so a restart is accepted only when salt-1 grew by exactly one (SQLite adds one per restart,
    wal.c walRestartHdr): two restarts between rounds, a WAL deleted and recreated, or a replaced file start a new
    generation with a snapshot instead of a silent gap.

    Under writes that never pause the WAL would never restart (the pin is always there), so past CHECKPOINT_FRAMES
    the replicator takes the write lock for a moment (BEGIN IMMEDIATE: writers wait, readers do not), ships the rest,
    lets go of its pins and checkpoints (PASSIVE); the next writer restarts the WAL.

    The work is split so that shipping keeps its cadence while slow work runs (ReplicationService runs each part on
    a thread of its own; `ship` runs them all once, in order): `ship_wal` ships frames; `begin_snapshot` and
    `upload_snapshot` take a snapshot at an exact WAL position while frames go on shipping into the current
    generation, and `ship_wal` then adopts it, ships the frames since that position into the new generation and only
    then publishes its snapshot.json; `maintain` compacts and deletes; the ArtifactShipper ships artifacts.
    """

    def __init__(
        self,
        database: Path,
        replica,
        now=time.time,
        *,
        scratch: Path | None = None,
        artifacts: Path | None = None,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
        retention: float = DEFAULT_RETENTION,
        checkpoint_frames: int = CHECKPOINT_FRAMES,
        artifact_interval: float = DEFAULT_ARTIFACT_INTERVAL,
        compact_segments: int = COMPACT_SEGMENTS,
        identity: str | None = None,
        max_wal_bytes: int = DEFAULT_MAX_WAL_BYTES,
        delete_grace: float = DELETE_GRACE_SECONDS,
        compact_age: float = 60.0,
    ):
        self.database = Path(database)
        self.wal = WalFile(self.database)
        self.store = open_store(replica)
        self.scratch = Path(scratch) if scratch else self.database.parent
        self.identity = identity or database_identity(self.scratch)
        self.artifacts = Path(artifacts) if artifacts else None
        self.shipper = ArtifactShipper(self.store, self.artifacts, now, artifact_interval) if self.artifacts else None
        self.now = now
        self.snapshot_interval, self.retention, self.checkpoint_frames = snapshot_interval, retention, checkpoint_frames
        self.compact_segments, self.compact_age, self.delete_grace = compact_segments, compact_age, delete_grace
        self.max_wal_bytes = max_wal_bytes
        self.lock = threading.RLock()
        self.generation: str | None = None
        self.snapshot_taken_at = 0.0
        self.position = Position(None, 0, (0, 0))
        self.wal_index = 0
        # After a WAL restart, until the new WAL's first segment is written: where the previous index ended.
        self.restart_pending = False
        self.previous_end: int | None = None
        self.resumed = False
        self.need_snapshot = False
        self.pending: SnapshotPlan | None = None  # uploaded, waiting for ship_wal to adopt it
        self._adopting: SnapshotPlan | None = None
        self.abandoned = False
        self.notice: str | None = None
        self.notice_at: float | None = None
        self._resume_tried = False
        self._replica_checked = False
        self._verified_at = 0.0
        self._tail_frames = 0
        self.checkpoints = 0
        self.compacted = 0
        # Segments this process wrote in the current generation and has not compacted: (key, sidecar).
        self._recent: list[tuple[str, dict]] = []
        self.pins = [sqlite3.connect(self.database, isolation_level=None, check_same_thread=False) for _ in range(2)]
        # The checkpoint's write lock: a short busy timeout, so a long application write makes it wait a round instead.
        self.locker = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False, timeout=0.2)
        self.pinned: int | None = None
        if self.pins[0].execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise ReplicaError(f"{self.database} cannot use WAL mode (a network file system?): replication needs it")

    # The position, as the attributes callers and tests read.
    offset = property(lambda self: self.position.offset)
    salts = property(lambda self: self.position.salts)
    artifacts_shipped = property(lambda self: self.shipper.shipped_count if self.shipper else 0)

    def close(self) -> None:
        with self.lock:
            for plan in (self.pending, self._adopting):
                if plan:
                    plan.release()
            self.pending = self._adopting = None
            for connection in [*self.pins, self.locker]:
                if connection.in_transaction:
                    connection.execute("COMMIT")
                connection.close()

    def _repin(self) -> None:
        """Pins the other connection at the newest commit, then releases the old pin: never a moment without one."""
        nxt = 0 if self.pinned != 0 else 1
        self.pins[nxt].execute("BEGIN")
        try:
            self.pins[nxt].execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
        except sqlite3.Error:
            self.pins[nxt].execute("ROLLBACK")  # else every later BEGIN fails "within a transaction"
            raise
        if self.pinned is not None:
            self.pins[self.pinned].execute("COMMIT")
        self.pinned = nxt

    def _unpin(self) -> None:
        if self.pinned is not None:
            self.pins[self.pinned].execute("COMMIT")
            self.pinned = None

    def _wal_index_header(self, header: WalHeader) -> tuple[int, tuple[int, int]] | None:
        return self.wal.committed_end(header)

    def _lock_writers(self) -> bool:
        try:
            self.locker.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError:  # an application write holds the lock: try again next round
            return False

    def _check_replica(self) -> None:
        """Refuses a replica that belongs to another database (two deployments pointed at one URL): shipping into it
        would interleave two databases' generations, and "latest" would restore the other one. @raises ReplicaForeign"""
        if self._replica_checked:
            return
        theirs = read_meta(self.store).get("identity")
        if theirs and theirs != self.identity:
            raise ReplicaForeign(
                f"the replica holds another database's generations (identity {theirs}; this database is {self.identity}): "
                "point MLFLOWCTL_REPLICA_URL at a replica of this deployment's own, or empty that one first"
            )
        self._replica_checked = True

    # ---- snapshots -------------------------------------------------------------------------------------------------

    def snapshot_due(self) -> bool:
        return self.generation is not None and self.now() - self.snapshot_taken_at >= self.snapshot_interval

    def begin_snapshot(self) -> SnapshotPlan:
        """The WAL's committed end, read while a write transaction keeps every writer out, and a read transaction on a
        connection of its own that holds that state; writers go on at once (the copy is made from the read
        transaction, at leisure, by upload_snapshot)."""
        reader = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
        writer = sqlite3.connect(self.database, isolation_level=None, timeout=5.0)
        try:
            writer.execute("BEGIN IMMEDIATE")
            try:
                header = self.wal.header()
                if header:
                    known = self.wal.committed_end(header)
                    if known is None:  # the wal-index cannot be read: scan the frames (writers wait meanwhile)
                        _, data = self.wal.read(0)
                        end, chain, _ = committed_frames(data, header, WAL_HEADER, header.checksum)
                        known = (end, chain)
                    position = Position(header.salts, known[0], known[1], header.page_size)
                else:
                    position = Position(None, 0, (0, 0), self.position.page_size)
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                writer.execute("COMMIT")
        except BaseException:
            reader.close()
            raise
        finally:
            writer.close()
        return SnapshotPlan(generation_id(self.now()), self.now(), position, reader)

    def upload_snapshot(self, plan: SnapshotPlan) -> SnapshotPlan:
        """Copies the plan's state (SQLite's online backup API) into scratch space, then uploads it gzipped; the
        generation stays invisible (no snapshot.json) until ship_wal adopts it."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        staged = self.scratch / f"replica-snapshot-{plan.generation}.db"
        packed = self.scratch / f"replica-snapshot-{plan.generation}.db.gz"
        try:
            copy = sqlite3.connect(staged)
            try:
                plan.connection.backup(copy)
            finally:
                copy.close()
            plan.size = staged.stat().st_size
            plan.sha256 = _gzip_file(staged, packed)
            self._put_meta()
            self.store.put_file(generation_key(plan.generation, "snapshot.db.gz"), packed)
        except BaseException:
            plan.release()
            raise
        finally:
            staged.unlink(missing_ok=True)
            packed.unlink(missing_ok=True)
        return plan

    def _put_meta(self) -> None:
        self.store.put(
            META_KEY,
            json.dumps(
                {
                    "format": REPLICA_FORMAT,
                    "database": self.database.name,
                    "identity": self.identity,
                    "artifactsRoot": str(self.artifacts) if self.artifacts else None,
                },
                sort_keys=True,
            ).encode(),
        )

    def offer(self, plan: SnapshotPlan) -> None:
        """Hands an uploaded snapshot to the shipping round, which adopts it."""
        with self.lock:
            if self.pending:
                self.pending.release()
            self.pending, self.need_snapshot = plan, False

    def _adopt(self, plan: SnapshotPlan) -> None:
        """The new generation begins at the plan's position: the round that follows ships the frames since then into it
        (the plan's read transaction kept the WAL from restarting past them), and _publish makes it visible."""
        self.generation, self.position = plan.generation, plan.position
        self.wal_index, self.restart_pending, self.previous_end, self._recent = 0, False, None, []
        self._adopting = plan

    def _publish(self) -> None:
        plan = self._adopting
        if plan is None:
            return
        self._adopting = None
        try:
            # Written last: a generation without snapshot.json is unfinished, and restores skip it.
            self.store.put(
                generation_key(plan.generation, "snapshot.json"),
                json.dumps(
                    {
                        "sha256": plan.sha256,
                        "bytes": plan.size,
                        "takenAt": plan.taken_at,
                        "walIndex": 0,
                        "offset": plan.position.offset,
                        "salts": list(plan.position.salts) if plan.position.salts else None,
                        "chain": list(plan.position.chain),
                        "pageSize": plan.position.page_size,
                        "identity": self.identity,
                    },
                    sort_keys=True,
                ).encode(),
            )
        finally:
            plan.release()
        self.snapshot_taken_at, self._verified_at = plan.taken_at, self.now()

    # ---- shipping --------------------------------------------------------------------------------------------------

    def _resume(self) -> bool:
        """Continues the newest generation when the WAL on disk still continues its last shipped segment."""
        found = generations(self.store)
        if not found:
            return False
        generation, snapshot = found[-1]
        if snapshot.get("identity", self.identity) != self.identity:
            return False  # another database's generation (copied in): never continued
        segments = sorted(segment_keys(self.store, generation), key=lambda entry: (entry[1], entry[3]))
        if segments:
            last = json.loads(self.store.get(segments[-1][0]))
            salts, end, chain, index = last["salts"], last["end"], last["chainAfter"], segments[-1][1]
        else:
            salts, end, chain, index = snapshot.get("salts"), snapshot["offset"], snapshot.get("chain"), 0
        if not salts or chain is None:
            return False
        # Under the write lock, as a snapshot is taken, and the tail committed since the last segment shipped before
        # it is let go: a pin taken on a WAL already copied back does not stop a writer restarting it, and that
        # restart would look like the one restart a round accepts.
        for _ in range(25):  # an application write may hold the lock for a moment at start-up
            if self._lock_writers():
                break
            time.sleep(0.2)
        else:
            return False
        try:
            self._repin()
            header, wal = self.wal.read(0)
            frame_size = FRAME_HEADER + (header.page_size if header else 0)
            if header is None or header.salts != tuple(salts) or len(wal) < end:
                return False
            if end > WAL_HEADER:
                c1, c2 = struct.unpack(">2I", wal[end - frame_size + 16 : end - frame_size + FRAME_HEADER])
                if [c1, c2] != list(chain):
                    return False
            elif list(header.checksum) != list(chain):
                return False
            self.generation, self.snapshot_taken_at = generation, snapshot["takenAt"]
            self.position = Position(header.salts, end, tuple(chain), header.page_size)
            self.wal_index, self.restart_pending, self.previous_end, self._recent = index, False, None, []
            try:
                self._tail_frames = self._ship_all()["frames"]
                self._repin()
            except BaseException:
                self.generation = None  # the next round tries again, or starts a new generation
                raise
            self.resumed, self._verified_at = True, self.now()
            return True
        finally:
            self.locker.execute("COMMIT")

    def _ship_frames(self, until: tuple[tuple[int, int], int] | None = None) -> dict:
        """Ships the committed frames after the position, at most MAX_SEGMENT_BYTES of them and none past `until` (the
        salts and offset of a committed end in the same WAL; None: the committed end now), as one segment (or none).
        Returns {"segment", "frames", "more": whether committed frames before `until` remain, "end": (salts, the
        committed end it saw)}. @raises _Discontinuity"""
        read_at = self.now()
        header = self.wal.header()
        result: dict = {"segment": None, "frames": 0, "more": False, "end": None}
        if header is None:
            return result
        start, chain = self.position.offset, self.position.chain
        if header.salts != self.position.salts:
            salts = self.position.salts
            if salts is not None and header.salts[0] != (salts[0] + 1) & 0xFFFFFFFF:
                raise _Discontinuity(
                    f"the WAL restarted more than once between rounds (salt-1 {salts[0]} → {header.salts[0]})"
                )
            # Restarted once since the last round: by the pin's rule every frame of the old WAL was shipped.
            if not self.restart_pending:
                self.previous_end, self.restart_pending = self.position.offset, True
            start, chain = WAL_HEADER, header.checksum
        # The wal-index first, the WAL after: frames up to its end are in the file before SQLite publishes it.
        known = self._wal_index_header(header)
        if known is not None and until is not None and until[0] == header.salts and start < until[1] < known[0]:
            # Shipped up to where the round began: what writers add meanwhile is the next round's. That end is a commit
            # frame, whose header carries SQLite's chain.
            _, data = self.wal.read(until[1] - header.page_size - FRAME_HEADER, FRAME_HEADER)
            if len(data) == FRAME_HEADER:
                known = (until[1], struct.unpack(">2I", data[16:24]))
        if known is not None:
            result["end"] = (header.salts, known[0])
        if known is not None and start <= known[0]:
            # The wal-index says where the committed frames end: the segment is cut at the last commit frame within
            # the size limit, whose header carries SQLite's chain (no checksum to compute here: a Python loop over every
            # word held the GIL for a fifth of the server's time).
            window = min(known[0] - start, MAX_SEGMENT_BYTES)
            while True:
                _, data = self.wal.read(start, window)
                cut = last_commit_within(data, header, MAX_SEGMENT_BYTES)
                if cut or window >= known[0] - start:
                    break
                window = min(known[0] - start, window * 2)  # one transaction larger than the limit: ship it whole
            # A pin taken when every frame was already copied back reads the database file and does not stop a
            # restart: a writer may have begun overwriting the WAL while it was read. A restart writes the new header
            # before any frame, so the same header after the read proves the bytes read are the ones the chain covers.
            if self.wal.header() != header or cut is None:
                return result
            relative_end, end_chain, frames = cut
            result["more"] = start + relative_end < known[0] and (until is None or until[0] == header.salts)
        else:
            # No usable wal-index: the frames are checksummed from the position on, a bounded window at a time (the
            # whole rest when a single transaction is larger than the window).
            _, data = self.wal.read(start, MAX_SEGMENT_BYTES)
            relative_end, end_chain, frames = committed_frames(data, header, 0, chain)
            if frames == 0 and len(data) == MAX_SEGMENT_BYTES:
                _, data = self.wal.read(start)
                relative_end, end_chain, frames = committed_frames(data, header, 0, chain)
            result["more"] = frames > 0 and len(data) == MAX_SEGMENT_BYTES
        end = start + relative_end
        if frames > 0:
            generation = self.generation
            assert generation is not None, "frames are shipped into a generation a snapshot began"
            index = self.wal_index + 1 if self.restart_pending else self.wal_index
            name = segment_name(index, start, end)
            compressed = gzip.compress(data[:relative_end], compresslevel=1)
            self.store.put(generation_key(generation, name), compressed)
            meta = {
                "sha256": hashlib.sha256(compressed).hexdigest(),
                "frames": frames,
                "start": start,
                "end": end,
                "commitTime": self.now(),
                "readAt": read_at,
                "salts": list(header.salts),
                "bigEndian": header.big_endian,
                "pageSize": header.page_size,
                "chainBefore": list(chain),
                "chainAfter": list(end_chain),
                "identity": self.identity,
                **({"previousIndexEnd": self.previous_end} if self.restart_pending else {}),
            }
            self.store.put(generation_key(generation, f"{name}.json"), json.dumps(meta, sort_keys=True).encode())
            self.wal_index, self.restart_pending, self.previous_end = index, False, None
            self._recent.append((generation_key(generation, name), meta))
            result.update(segment=generation_key(generation, name), frames=frames)
        self.position = Position(header.salts, end, (end_chain[0], end_chain[1]), header.page_size)
        return result

    def _ship_all(self) -> dict:
        """Segments until what was committed when the first was read is shipped (a writer that never pauses would
        otherwise keep one round going)."""
        total = {"segment": None, "frames": 0}
        until = None
        while True:
            shipped = self._ship_frames(until)
            total["frames"] += shipped["frames"]
            total["segment"] = shipped["segment"] or total["segment"]
            until = until or shipped["end"]
            if not shipped["more"]:
                return total

    def _checkpoint_due(self) -> bool:
        return self.position.offset - WAL_HEADER >= self.checkpoint_frames * (FRAME_HEADER + self.position.page_size)

    def _verify_generation(self) -> None:
        """Every VERIFY_SECONDS: is the generation still in the replica? Deleted (by hand, by a lifecycle rule), the
        rounds would ship into nothing restorable; a new generation starts instead, and the status says so."""
        if self.generation is None or self._adopting or self.now() - self._verified_at < VERIFY_SECONDS:
            return
        self._verified_at = self.now()
        if self.store.find(generation_key(self.generation, "snapshot.json")) is None:
            notice = self._say(
                f"generation {self.generation} vanished from the replica (deleted by hand or by a lifecycle rule): a new one starts"
            )
            log_event("replica.generation_vanished", notice, logging.WARNING)
            self.generation, self.need_snapshot = None, True
            self._unpin()

    def ship_wal(self) -> dict:
        """One shipping round: the committed frames after the position, in bounded segments, the pin moved forward,
        the WAL restarted when it grew past CHECKPOINT_FRAMES. Adopts an offered snapshot first; resumes the newest
        generation when there is none yet; asks for a snapshot (need_snapshot) when neither can be done.
        Returns {"generation", "segment", "frames", "newGeneration", "checkpointed"}."""
        result = {"generation": None, "segment": None, "frames": 0, "newGeneration": False, "checkpointed": False}
        with self.lock:
            if self.abandoned:
                self._put_meta()  # raises while the replica still takes no writes
                self.abandoned, self.need_snapshot = False, True
                self._say("the replica answers again: a new generation starts")
                return result
            if self.pending is not None:
                plan, self.pending = self.pending, None
                self._adopt(plan)
            if self.generation is None and not self._resume_tried:
                self._resume_tried = True
                self._check_replica()
                if self._resume():
                    result["frames"] += self._tail_frames
            self._verify_generation()
            if self.generation is None:
                self.need_snapshot = True
                return result
            try:
                shipped = self._ship_all()
                result["frames"] += shipped["frames"]
                result["segment"] = shipped["segment"]
                if self._checkpoint_due() and self._lock_writers():
                    try:
                        rest = self._ship_all()  # what was committed since: normally a few frames
                        result["frames"] += rest["frames"]
                        self._unpin()
                        try:
                            self.pins[0].execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                            self.checkpoints += 1
                            result["checkpointed"] = True
                        finally:
                            # Pinned again before writers may go on: with no pin, a writer could append, a checkpoint
                            # copy it back and a second writer restart the WAL over it before the next round.
                            self._repin()
                    finally:
                        self.locker.execute("COMMIT")
                else:
                    self._repin()
            except _Discontinuity as reason:
                log_event(
                    "replica.new_generation",
                    "the WAL does not continue the replica; starting a new generation",
                    logging.WARNING,
                    reason=str(reason),
                )
                self._drop_generation()
                self.need_snapshot = True
                return result
            except BaseException:
                if self._adopting:  # the new generation never became visible: it is taken again
                    self._drop_generation()
                raise
            result["newGeneration"] = self._adopting is not None
            self._publish()
            result["generation"] = self.generation
        return result

    def _say(self, notice: str) -> str:
        self.notice, self.notice_at = notice, time.time()
        return notice

    def _drop_generation(self) -> None:
        if self._adopting:
            self._adopting.release()
            self._adopting = None
        self.generation = None
        self._unpin()

    def after_failure(self) -> None:
        """After a failed round: past max_wal_bytes of WAL the pins go (the server's WAL must not grow without end
        while the replica does not answer) and the generation with them; the next answer starts a new one."""
        with self.lock:
            if self.abandoned or self.wal.size() <= self.max_wal_bytes:
                return
            self._drop_generation()
            self.abandoned = True
            notice = self._say(
                f"the replica did not answer while the WAL grew past {self.max_wal_bytes / 2**20:g} MiB: stopped "
                "holding it; a new generation starts when the replica answers"
            )
            log_event("replica.abandoned", notice, logging.WARNING)

    # ---- one whole round (tests, and a graceful stop's last round) --------------------------------------------------

    def ship(self) -> dict:
        """Ships the WAL, takes a snapshot when one is needed or due (inline), then artifacts and maintenance.
        Returns ship_wal's result with "artifacts" and "compacted"."""
        result = self.ship_wal()
        if self.need_snapshot or self.snapshot_due():
            self.offer(self.upload_snapshot(self.begin_snapshot()))
            shipped = self.ship_wal()
            result.update(
                generation=shipped["generation"], newGeneration=True, frames=result["frames"] + shipped["frames"]
            )
            apply_retention(self.store, self.now(), self.retention, 0.0, self.generation)
        result["artifacts"] = self.shipper.ship() if self.shipper else 0
        result["compacted"] = self.maintain(sweep=False)
        return result

    def maintain(self, sweep: bool = True) -> int:
        """Compaction, then deleting what stopped being needed at least delete_grace ago (merged segments, generations
        past retention; `sweep` False: only after a merge, and no retention). Returns how many segments were merged
        away."""
        with self.lock:
            cutoff = self.now() - self.compact_age
            eligible = [entry for entry in self._recent if entry[1]["commitTime"] <= cutoff]
            if len(eligible) < self.compact_segments:
                eligible = []
            # Forgotten before merging: a group that fails (a segment gone, a store error) is left as it is.
            self._recent = [entry for entry in self._recent if entry not in eligible]
            generation = self.generation
        merged = compact(self.store, eligible, self.now()) if eligible else 0
        self.compacted += merged
        if generation and (sweep or merged):
            sweep_merged(self.store, generation, self.now(), self.delete_grace)
        if sweep:
            apply_retention(self.store, self.now(), self.retention, self.delete_grace, generation)
        return merged


def _gzip_file(source: Path, target: Path) -> str:
    """gzip(source) streamed into `target`; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()

    class Hashing:
        def __init__(self, raw) -> None:
            self.raw = raw

        def write(self, data) -> int:
            digest.update(data)
            return self.raw.write(data)

        def flush(self) -> None:
            self.raw.flush()

    with open(source, "rb") as data, open(target, "wb") as raw:
        with gzip.GzipFile(fileobj=Hashing(raw), mode="wb", compresslevel=1, mtime=0) as out:  # type: ignore[arg-type]
            while block := data.read(1 << 20):
                out.write(block)
    return digest.hexdigest()
