"""Continuous replication of the SQLite store (issue 19; docs/design/replication.md): the WAL, read while a read
transaction pins it, shipped as checked segments after a snapshot, and restored to any shipped commit.

The WAL format, one replication round (Replicator: WAL segments, snapshots, its own checkpoints, retention,
artifacts) against a directory or object-store replica (replica_store.py), the restore that replays a replica into a
database file, and the service that runs rounds while the server serves (ReplicationService; started by
server.build_app when MLFLOWCTL_REPLICA_URL is set). The CLI reads the same layout (src/core/replica.ts).

SQLite's WAL (sqlite src/wal.c, header comment): a 32-byte header (magic 0x377f0682 or 0x377f0683, which picks the
byte order of the checksums; format; page size; checkpoint sequence; salt-1; salt-2; a checksum of the first 24
bytes), then frames: a 24-byte header (page number; the database size in pages for a commit frame, else 0; the two
salts; a cumulative checksum of this frame's first 8 header bytes and page, continuing the previous frame's) and one
page. A frame counts only if its salts match the header's and its checksum continues the chain; a transaction
counts only once its commit frame does.
"""
from __future__ import annotations

import atexit
import fcntl
import gzip
import hashlib
import json
import logging
import os
import re
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .logs import log_event, redact
from .replica_store import STATIC_CREDENTIALS, open_store, replica_credentials

WAL_HEADER = 32
FRAME_HEADER = 24
MAGIC = (0x377F0682, 0x377F0683)
REPLICA_FORMAT = 1


class ReplicaError(Exception):
    """A replica that cannot be restored past some point: the reason names the segment and what is wrong."""


class ReplicaForeign(ReplicaError):
    """A replica, generation or segment of another database than the one being replicated or restored."""


IDENTITY_FILE = "replica-identity"


def database_identity(state_dir: Path) -> str:
    """This database's identity as a replica knows it: fixed when replication first starts, kept in the state
    directory beside it (so two deployments restored from one backup are two databases), written once."""
    path = Path(state_dir) / IDENTITY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as handle:
            handle.write(os.urandom(16).hex())
    except FileExistsError:
        pass  # another process of this deployment wrote it first
    return path.read_text().strip()


def wal_checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    """SQLite's WAL checksum (walChecksumBytes): over 32-bit words, two at a time, modulo 2**32."""
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass
class WalHeader:
    big_endian: bool
    page_size: int
    checkpoint_seq: int
    salts: tuple[int, int]
    checksum: tuple[int, int]


def parse_wal_header(data: bytes) -> WalHeader | None:
    """The header, or None when there is none yet or it does not check (an empty or restarting WAL)."""
    if len(data) < WAL_HEADER:
        return None
    magic, _format, page_size, seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:WAL_HEADER])
    if magic not in MAGIC:
        return None
    big_endian = magic == MAGIC[1]
    if wal_checksum(data[:24], big_endian) != (c1, c2):
        return None
    return WalHeader(big_endian, page_size or 65536, seq, (salt1, salt2), (c1, c2))


def committed_frames(data: bytes, header: WalHeader, start: int, checksum: tuple[int, int]) -> tuple[int, tuple[int, int], int]:
    """Scans frames from byte `start` (a frame boundary, `checksum` the chain so far) and returns the end of the last
    valid commit frame, the chain at that point, and the number of frames up to it. Stops at the first frame that does
    not check: what follows belongs to an unfinished transaction, or to an older use of the file."""
    frame_size = FRAME_HEADER + header.page_size
    at, chain = start, checksum
    end, end_chain, frames, count = start, checksum, 0, 0
    while at + frame_size <= len(data):
        pgno, db_size, salt1, salt2, c1, c2 = struct.unpack(">6I", data[at : at + FRAME_HEADER])
        if (salt1, salt2) != header.salts or pgno == 0:
            break
        chain = wal_checksum(data[at : at + 8], header.big_endian, *chain)
        chain = wal_checksum(data[at + FRAME_HEADER : at + frame_size], header.big_endian, *chain)
        if chain != (c1, c2):
            break
        at += frame_size
        count += 1
        if db_size:
            end, end_chain, frames = at, chain, count
    return end, end_chain, frames


# Descriptors of -shm files by inode, opened once and never closed while the process lives (read_shm).
_SHM_DESCRIPTORS: dict[tuple[int, int], int] = {}
_SHM_LOCK = threading.Lock()


def read_shm(path: Path, size: int) -> bytes:
    """The first `size` bytes of a -shm file, through a descriptor kept open for the life of the process. SQLite's WAL
    locks (the read marks that pin the WAL among them) are POSIX locks on the -shm file, and closing any descriptor of
    a file drops every such lock the process holds on it, the server's own connections' too
    (sqlite.org/howtocorrupt.html §2.2): a replicator that opened and closed it each round let another process
    checkpoint and restart the WAL under its pin. A file replaced since (a new inode) gets a descriptor of its own;
    the old one stays open, as SQLite may still hold locks through it."""
    try:
        identity = os.stat(path)
    except FileNotFoundError:
        return b""
    with _SHM_LOCK:
        descriptor = _SHM_DESCRIPTORS.get((identity.st_dev, identity.st_ino))
        if descriptor is None:
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return b""
            # Keyed by what was opened (the file may have been replaced since the stat): never closed either way.
            opened = os.fstat(descriptor)
            _SHM_DESCRIPTORS.setdefault((opened.st_dev, opened.st_ino), descriptor)
    return os.pread(descriptor, size, 0)


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


def generation_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + os.urandom(3).hex()


def parse_duration(text: str | None, default: float) -> float:
    """'7d', '12h', '30m', '45s' or a number of seconds."""
    if not text:
        return default
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (for example 7d, 12h, 30m or 45s)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


SEGMENT_KEY = re.compile(r"^generations/([^/]+)/wal/([0-9a-f]{8})/([0-9a-f]{16})-([0-9a-f]{16})\.frames\.gz\.json$")
DEFAULT_SNAPSHOT_INTERVAL = 24 * 3600.0
DEFAULT_RETENTION = 7 * 86400.0
# Like Litestream's MinCheckpointPageN: past this many frames in the WAL the replicator restarts it itself.
CHECKPOINT_FRAMES = 1000
DEFAULT_ARTIFACT_INTERVAL = 5.0
# Compaction: once this many segments older than COMPACT_AGE_SECONDS wait, consecutive ones of a WAL index are merged
# into one (at most COMPACT_BYTES of frames), keeping each one's commit point, so a restore reads a few large objects
# instead of one pair per second of writes and can still stop at any of the points.
COMPACT_SEGMENTS = 300
COMPACT_AGE_SECONDS = 60.0
COMPACT_BYTES = 64 << 20


class _Discontinuity(Exception):
    """The WAL does not continue what was shipped (restarted more than once between rounds, or replaced)."""


class Replicator:
    """Ships the database's committed WAL frames to a replica (a directory or an object store), one round at a time
    (`ship`), and the artifact files once each.

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

    A new process resumes the newest generation when the WAL still continues its last segment (same salts, and the
    frame before the shipped end carries the shipped checksum), else starts a new one. Every `snapshot_interval` a
    new generation starts, and generations whose successor is older than `retention` are deleted.

    Position: the WAL's salts, the byte offset after the last shipped commit frame, and SQLite's checksum chain there.
    """

    def __init__(self, database: Path, replica, now=time.time, *, scratch: Path | None = None, artifacts: Path | None = None,
                 snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL, retention: float = DEFAULT_RETENTION,
                 checkpoint_frames: int = CHECKPOINT_FRAMES, artifact_interval: float = DEFAULT_ARTIFACT_INTERVAL,
                 compact_segments: int = COMPACT_SEGMENTS, identity: str | None = None):
        self.database = Path(database)
        self.wal = Path(f"{database}-wal")
        self.store = open_store(replica)
        self.scratch = Path(scratch) if scratch else self.database.parent
        self.identity = identity or database_identity(self.scratch)
        self._replica_checked = False
        self.artifacts = Path(artifacts) if artifacts else None
        self.now = now
        self.snapshot_interval, self.retention = snapshot_interval, retention
        self.checkpoint_frames, self.artifact_interval = checkpoint_frames, artifact_interval
        self.generation: str | None = None
        self.snapshot_taken_at = 0.0
        self.salts: tuple[int, int] | None = None
        self.page_size = 4096
        self.offset = 0
        self.chain: tuple[int, int] = (0, 0)
        self.wal_index = 0
        # After a WAL restart, until the new WAL's first segment is written: where the previous index ended.
        self.restart_pending = False
        self.previous_end: int | None = None
        self.resumed = False
        self._tail_frames = 0
        self.checkpoints = 0
        self.artifacts_shipped = 0
        self._shipped_artifacts: dict[str, tuple[int, int | None]] | None = None
        self._previous_scan: dict[str, tuple[int, int]] = {}
        self._next_artifact_scan = 0.0
        self.compact_segments, self.compacted = compact_segments, 0
        # Segments this process wrote in the current generation and has not compacted: (key, sidecar).
        self._recent: list[tuple[str, dict]] = []
        self.pins = [sqlite3.connect(self.database, isolation_level=None, check_same_thread=False) for _ in range(2)]
        # The checkpoint's write lock: a short busy timeout, so a long application write makes it wait a round instead.
        self.locker = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False, timeout=0.2)
        self.pinned: int | None = None
        if self.pins[0].execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise ReplicaError(f"{self.database} cannot use WAL mode (a network file system?): replication needs it")

    def close(self) -> None:
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

    def _read_wal(self, start: int) -> tuple[WalHeader | None, bytes]:
        """The WAL's header and its bytes from `start` on (not the whole file each round: it may be megabytes)."""
        try:
            with open(self.wal, "rb") as handle:
                header = parse_wal_header(handle.read(WAL_HEADER))
                handle.seek(start)
                return header, handle.read()
        except FileNotFoundError:
            return None, b""

    def _wal_header(self) -> WalHeader | None:
        try:
            with open(self.wal, "rb") as handle:
                return parse_wal_header(handle.read(WAL_HEADER))
        except FileNotFoundError:
            return None

    def _check_replica(self) -> None:
        """Refuses a replica that belongs to another database (two deployments pointed at one URL): shipping into it
        would interleave two databases' generations, and "latest" would restore the other one. @raises ReplicaForeign"""
        if self._replica_checked:
            return
        found = self.store.find("mlflowctl-replica.json")
        try:
            meta = json.loads(found) if found else {}
        except ValueError:
            meta = {}  # damaged: rewritten with the next generation
        theirs = meta.get("identity") if isinstance(meta, dict) else None
        if theirs and theirs != self.identity:
            raise ReplicaForeign(
                f"the replica holds another database's generations (identity {theirs}; this database is {self.identity}): "
                "point MLFLOWCTL_REPLICA_URL at a replica of this deployment's own, or empty that one first")
        self._replica_checked = True

    def _generation_key(self, name: str) -> str:
        return f"generations/{self.generation}/{name}"

    def _new_generation(self) -> None:
        """A snapshot and the WAL position it corresponds to, exactly: while a write transaction keeps every writer
        out, the WAL's committed end is read and a read transaction pins that state; then writers go on, and the
        snapshot is copied from the pin at leisure (SQLite's online backup API) into scratch space, then uploaded.
        A failure leaves no generation current, so the next round starts over (a generation without snapshot.json is
        invisible to restores: shipping on into it would hide every later commit; review F3)."""
        try:
            self._take_snapshot()
        except BaseException:
            self.generation, self._recent = None, []
            raise

    def _take_snapshot(self) -> None:
        self.generation = generation_id(self.now())
        self.store.put("mlflowctl-replica.json", json.dumps({
            "format": REPLICA_FORMAT, "database": self.database.name, "identity": self.identity,
            "artifactsRoot": str(self.artifacts) if self.artifacts else None,
        }, sort_keys=True).encode())
        self._unpin()
        writer, reader = self.pins
        writer.execute("BEGIN IMMEDIATE")
        try:
            header, wal = self._read_wal(0)
            if header:
                self.offset, self.chain, _ = committed_frames(wal, header, WAL_HEADER, header.checksum)
                self.salts, self.page_size = header.salts, header.page_size
            else:
                self.offset, self.chain, self.salts = 0, (0, 0), None
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            writer.execute("COMMIT")
        self.pinned = 1
        taken_at = self.now()
        self.scratch.mkdir(parents=True, exist_ok=True)
        staged, packed = self.scratch / "replica-snapshot.db", self.scratch / "replica-snapshot.db.gz"
        copy = sqlite3.connect(staged)
        try:
            reader.backup(copy)
        finally:
            copy.close()
        try:
            size = staged.stat().st_size
            sha = _gzip_file(staged, packed)
            self.store.put_file(self._generation_key("snapshot.db.gz"), packed)
        finally:
            staged.unlink(missing_ok=True)
            packed.unlink(missing_ok=True)
        self.wal_index, self.restart_pending, self.previous_end = 0, False, None
        self._recent = []
        self.snapshot_taken_at = taken_at
        # Written last: a generation without snapshot.json is unfinished, and restores skip it.
        self.store.put(self._generation_key("snapshot.json"), json.dumps({
            "sha256": sha, "bytes": size, "takenAt": taken_at, "walIndex": 0, "offset": self.offset,
            "salts": list(self.salts) if self.salts else None, "chain": list(self.chain), "pageSize": self.page_size,
            "identity": self.identity,
        }, sort_keys=True).encode())

    def _resume(self) -> bool:
        """Continues the newest generation when the WAL on disk still continues its last shipped segment."""
        generations = _generations(self.store)
        if not generations:
            return False
        generation, snapshot = generations[-1]
        if snapshot.get("identity", self.identity) != self.identity:
            return False  # another database's generation (copied in): never continued
        segments = sorted(_segment_keys(self.store, generation), key=lambda entry: (entry[1], entry[3]))
        if segments:
            last = json.loads(self.store.get(segments[-1][0]))
            salts, end, chain, index = last["salts"], last["end"], last["chainAfter"], segments[-1][1]
        else:
            salts, end, chain, index = snapshot.get("salts"), snapshot["offset"], snapshot.get("chain"), 0
        if not salts or chain is None:
            return False
        # Under the write lock, as a snapshot is taken, and the tail committed since the last segment shipped before
        # it is let go: a pin taken on a WAL already copied back does not stop a writer restarting it, and that
        # restart would look like the one restart a round accepts (review F2).
        if not self._lock_writers():
            return False
        try:
            self._repin()
            header, wal = self._read_wal(0)
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
            self.salts, self.page_size, self.offset, self.chain, self.wal_index = header.salts, header.page_size, end, tuple(chain), index
            self.restart_pending, self.previous_end, self._recent = False, None, []
            try:
                self._tail_frames = self._ship_frames()["frames"]
                self._repin()
            except BaseException:
                self.generation = None  # the next round tries again, or starts a new generation
                raise
            self.resumed = True
            return True
        finally:
            self.locker.execute("COMMIT")

    def _ship_frames(self) -> dict:
        """Ships the committed frames after the position as one segment (or none). @raises _Discontinuity"""
        read_at = self.now()
        header = self._wal_header()
        result = {"segment": None, "frames": 0}
        if header is None:
            return result
        start, chain = self.offset, self.chain
        if header.salts != self.salts:
            if self.salts is not None and header.salts[0] != (self.salts[0] + 1) & 0xFFFFFFFF:
                raise _Discontinuity(f"the WAL restarted more than once between rounds (salt-1 {self.salts[0]} → {header.salts[0]})")
            # Restarted once since the last round: by the pin's rule every frame of the old WAL was shipped.
            if not self.restart_pending:
                self.previous_end, self.restart_pending = self.offset, True
            start, chain = WAL_HEADER, header.checksum
        # The wal-index first, the WAL after: frames up to its end are in the file before SQLite publishes it.
        known = self._wal_index_header(header)
        _, data = self._read_wal(start)
        if known is not None and start <= known[0] <= start + len(data):
            # The wal-index says where the last commit ends and SQLite's chain there: no checksum to compute here
            # (a Python loop over every word of every page held the GIL for a fifth of the server's time).
            relative_end, end_chain = known[0] - start, known[1]
            frames = relative_end // (FRAME_HEADER + header.page_size)
            # A pin taken when every frame was already copied back reads the database file and does not stop a
            # restart: a writer may have begun overwriting the WAL while it was read. A restart writes the new header
            # before any frame, so the same header after the read proves the bytes read are the ones the chain covers.
            if self._wal_header() != header:
                return result
        else:
            relative_end, end_chain, frames = committed_frames(data, header, 0, chain)
        end = start + relative_end
        if frames > 0:
            index = self.wal_index + 1 if self.restart_pending else self.wal_index
            name = f"wal/{index:08x}/{start:016x}-{end:016x}.frames.gz"
            compressed = gzip.compress(data[:relative_end], compresslevel=1)
            self.store.put(self._generation_key(name), compressed)
            meta = {
                "sha256": hashlib.sha256(compressed).hexdigest(), "frames": frames, "start": start, "end": end,
                "commitTime": self.now(), "readAt": read_at, "salts": list(header.salts), "bigEndian": header.big_endian,
                "pageSize": header.page_size, "chainBefore": list(chain), "chainAfter": list(end_chain),
                "identity": self.identity,
                **({"previousIndexEnd": self.previous_end} if self.restart_pending else {}),
            }
            self.store.put(self._generation_key(f"{name}.json"), json.dumps(meta, sort_keys=True).encode())
            self.wal_index, self.restart_pending, self.previous_end = index, False, None
            self._recent.append((self._generation_key(name), meta))
            result.update(segment=self._generation_key(name), frames=frames)
        self.salts, self.page_size, self.offset, self.chain = header.salts, header.page_size, end, end_chain
        return result

    def _wal_index_header(self, header: WalHeader) -> tuple[int, tuple[int, int]] | None:
        """The committed end of the WAL (a byte offset) and SQLite's checksum chain there, from the wal-index header
        in the -shm file (sqlite.org/walformat.html, "The WAL-Index Header": two 48-byte copies, native byte order;
        mxFrame at byte 16, aFrameCksum at 24, aSalt at 32). None when it cannot be trusted: the copies differ (a
        writer is updating them), the salts are not the WAL file's, or the last frame does not carry that chain as a
        commit frame; the caller then scans the WAL itself."""
        raw = read_shm(Path(f"{self.database}-shm"), 96)
        if len(raw) < 96 or raw[:48] != raw[48:96]:
            return None
        mx_frame, _pages, c1, c2 = struct.unpack("=4I", raw[16:32])
        # aSalt holds the WAL header's bytes as they are (big-endian words); the rest are native integers.
        salts = struct.unpack(">2I", raw[32:40])
        if salts != header.salts or mx_frame == 0:
            return None
        frame_size = FRAME_HEADER + header.page_size
        end = WAL_HEADER + mx_frame * frame_size
        try:
            with open(self.wal, "rb") as handle:
                handle.seek(end - frame_size)
                last = handle.read(FRAME_HEADER)
        except FileNotFoundError:
            return None
        if len(last) < FRAME_HEADER:
            return None
        _pgno, commit, fsalt1, fsalt2, f1, f2 = struct.unpack(">6I", last)
        if not commit or (fsalt1, fsalt2) != header.salts or (f1, f2) != (c1, c2):
            return None
        return end, (c1, c2)

    def _checkpoint_due(self) -> bool:
        return self.offset - WAL_HEADER >= self.checkpoint_frames * (FRAME_HEADER + self.page_size)

    def ship(self) -> dict:
        """One round: ship the committed frames after the position as one segment, move the pin forward, restart the
        WAL when it grew past CHECKPOINT_FRAMES, start a new generation when the snapshot is due, ship artifacts.
        Returns {"generation", "segment" (a key, or None), "frames", "newGeneration", "checkpointed", "artifacts"}."""
        result = {"generation": None, "segment": None, "frames": 0, "newGeneration": False, "checkpointed": False, "artifacts": 0, "compacted": 0}
        tail = 0
        if self.generation is None:
            self._check_replica()
            if not self._resume():
                self._new_generation()
                self._apply_retention()
                result.update(generation=self.generation, newGeneration=True, artifacts=self._ship_artifacts())
                return result
            tail = self._tail_frames  # shipped by _resume under the write lock
        try:
            # Shipped without the write lock first: a slow or unreachable replica never holds writers up.
            result.update(self._ship_frames())
            result["frames"] += tail
            if self._checkpoint_due() and self._lock_writers():
                try:
                    rest = self._ship_frames()  # what was committed since: normally a few frames
                    result["frames"] += rest["frames"]
                    self._unpin()
                    try:
                        self.pins[0].execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        self.checkpoints += 1
                        result["checkpointed"] = True
                    finally:
                        # Pinned again before writers may go on: with no pin, a writer could append, a checkpoint copy
                        # it back and a second writer restart the WAL over it before the next round (review F1).
                        self._repin()
                finally:
                    self.locker.execute("COMMIT")
            else:
                self._repin()
        except _Discontinuity as reason:
            log_event("replica.new_generation", "the WAL does not continue the replica; starting a new generation", logging.WARNING, reason=str(reason))
            self._new_generation()
            result["newGeneration"] = True
        if self.now() - self.snapshot_taken_at >= self.snapshot_interval:
            self._new_generation()
            self._apply_retention()
            result["newGeneration"] = True
        result.update(generation=self.generation, artifacts=self._ship_artifacts(), compacted=self._compact())
        return result

    def _compact(self) -> int:
        """Merges runs of old segments (see COMPACT_SEGMENTS): the merged segment and its sidecar (with `points`: each
        merged segment's end, commit time and chain) are written first, then the merged ones deleted; a restore that
        sees both prefers the larger. Returns how many segments were merged away."""
        cutoff = self.now() - COMPACT_AGE_SECONDS
        eligible = [entry for entry in self._recent if entry[1]["commitTime"] <= cutoff]
        if len(eligible) < self.compact_segments:
            return 0
        merged = 0
        while eligible:
            group = [eligible.pop(0)]
            size = group[0][1]["end"] - group[0][1]["start"]
            while eligible and eligible[0][1]["start"] == group[-1][1]["end"] and eligible[0][1]["salts"] == group[0][1]["salts"] and size < COMPACT_BYTES:
                size += eligible[0][1]["end"] - eligible[0][1]["start"]
                group.append(eligible.pop(0))
            # Forgotten before merging: a group that fails (a segment gone, a store error) is left as it is, not
            # retried every round.
            self._recent = [entry for entry in self._recent if entry not in group]
            if len(group) > 1:
                self._merge(group)
                merged += len(group)
        self.compacted += merged
        return merged

    def _merge(self, group: list[tuple[str, dict]]) -> None:
        frames = bytearray()
        points = []
        for key, meta in group:
            stored = self.store.get(key)
            if hashlib.sha256(stored).hexdigest() != meta["sha256"]:
                raise ReplicaError(f"{key} changed in the replica since it was written; not compacting it")
            frames += gzip.decompress(stored)
            points.append({"end": meta["end"], "commitTime": meta["commitTime"], "chainAfter": meta["chainAfter"], "frames": meta["frames"]})
        first, last = group[0][1], group[-1][1]
        compressed = gzip.compress(bytes(frames), compresslevel=1)
        name = group[0][0].rsplit("/", 1)[0] + f"/{first['start']:016x}-{last['end']:016x}.frames.gz"
        self.store.put(name, compressed)
        self.store.put(f"{name}.json", json.dumps({
            **{k: first[k] for k in ("start", "salts", "bigEndian", "pageSize", "chainBefore") if k in first},
            **({"identity": first["identity"]} if "identity" in first else {}),
            **({"previousIndexEnd": first["previousIndexEnd"]} if "previousIndexEnd" in first else {}),
            "end": last["end"], "chainAfter": last["chainAfter"], "commitTime": last["commitTime"], "readAt": last.get("readAt"),
            "frames": sum(point["frames"] for point in points), "sha256": hashlib.sha256(compressed).hexdigest(), "points": points,
        }, sort_keys=True).encode())
        try:
            self.store.delete([k for key, _ in group for k in (key, f"{key}.json")])
        except Exception as exc:  # leftovers are harmless: restores prefer the merged segment
            log_event("replica.compaction", "merged segments could not all be deleted", logging.WARNING, reason=redact(f"{type(exc).__name__}: {exc}"))

    def _lock_writers(self) -> bool:
        try:
            self.locker.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError:  # an application write holds the lock: try again next round
            return False

    def _apply_retention(self) -> None:
        """Deletes each generation whose successor began before the retention window: nothing in the window needs it."""
        cutoff = self.now() - self.retention
        generations = _generations(self.store)
        doomed = [g for (g, _), (_, after) in zip(generations, generations[1:]) if after["takenAt"] <= cutoff]
        finished = {g for g, _ in generations}
        keys = self.store.list("generations/")
        # Unfinished generations (a snapshot interrupted by a crash) older than the current one go too.
        doomed += sorted({k.split("/")[1] for k, _ in keys if k.split("/")[1] not in finished and k.split("/")[1] < (self.generation or "")})
        for generation in doomed:
            self.store.delete([k for k, _ in keys if k.startswith(f"generations/{generation}/")])
            log_event("replica.retention", "deleted a generation older than the retention window", generation=generation)

    def _ship_artifacts(self) -> int:
        """Ships artifact files not shipped yet (or changed), once each, by path under artifacts/. A file goes once its
        size and mtime held still for a scan (MLflow may still be writing it)."""
        if not self.artifacts or self.now() < self._next_artifact_scan:
            return 0
        self._next_artifact_scan = self.now() + self.artifact_interval
        if self._shipped_artifacts is None:
            self._shipped_artifacts = {key[len("artifacts/") :]: (size, None) for key, size in self.store.list("artifacts/")}
        scan: dict[str, tuple[int, int]] = {}
        for directory, _, files in os.walk(self.artifacts):
            for name in files:
                path = Path(directory) / name
                try:
                    stat = path.lstat()
                except FileNotFoundError:
                    continue
                if path.is_symlink():
                    continue
                scan[path.relative_to(self.artifacts).as_posix()] = (stat.st_size, stat.st_mtime_ns)
        shipped = 0
        for relative, (size, mtime) in sorted(scan.items()):
            known = self._shipped_artifacts.get(relative)
            if known and known[0] == size and known[1] in (None, mtime):
                self._shipped_artifacts[relative] = (size, mtime)
                continue
            if self._previous_scan.get(relative) != (size, mtime):
                continue  # new or still changing: next scan
            self.store.put_file(f"artifacts/{relative}", self.artifacts / relative)
            self._shipped_artifacts[relative] = (size, mtime)
            shipped += 1
        self._previous_scan = scan
        self.artifacts_shipped += shipped
        return shipped


def _generations(store) -> list[tuple[str, dict]]:
    """Finished generations (those with snapshot.json), oldest first, with their snapshot.json."""
    ids = sorted({key.split("/")[1] for key, _ in store.list("generations/") if key.endswith("/snapshot.json") and key.count("/") == 2})
    found = [(g, json.loads(store.get(f"generations/{g}/snapshot.json"))) for g in ids]
    # By the snapshot's time: two generations begun in the same second have IDs that sort by their random part.
    return sorted(found, key=lambda entry: (entry[1]["takenAt"], entry[0]))


def _segment_keys(store, generation: str) -> list[tuple[str, int, int, int]]:
    """The sidecar keys of a generation's segments with their WAL index, start and end, in replay order (a merged
    segment before the ones it merged, while they still exist)."""
    found = []
    for key, _ in store.list(f"generations/{generation}/wal/"):
        match = SEGMENT_KEY.match(key)
        if match:
            found.append((key, int(match.group(2), 16), int(match.group(3), 16), int(match.group(4), 16)))
    return sorted(found, key=lambda entry: (entry[1], entry[2], -entry[3]))


def replay(replica, at: float | None = None) -> Iterator[tuple[str, dict | None, bytearray]]:
    """Rebuilds the database of the newest generation as of `at` (a Unix time; default: everything shipped): yields
    the generation and the database's pages after its snapshot (with None), then after each segment it applies (with
    its sidecar, `frames` the frames applied from it). Every
    segment is checked (its SHA-256, its salts and SQLite's checksum chain, and that it starts where the previous one
    ended); the first that fails raises ReplicaError."""
    store = open_store(replica)
    generations = _generations(store)
    if not generations:
        raise ReplicaError(f"{store.url} holds no generation")
    chosen = next(((g, s) for g, s in reversed(generations) if at is None or s["takenAt"] <= at), None)
    if chosen is None:
        raise ReplicaError(f"{store.url} holds nothing as old as {at}")
    generation, snapshot = chosen
    # The replica's database, the generation's and each segment's must be one (two deployments on one URL, a
    # generation or segment copied in from another database).
    replica_meta = json.loads(store.find("mlflowctl-replica.json") or b"{}")
    identity = snapshot.get("identity") or replica_meta.get("identity")
    if replica_meta.get("identity") and snapshot.get("identity") and snapshot["identity"] != replica_meta["identity"]:
        raise ReplicaForeign(f"generation {generation} belongs to another database (identity {snapshot['identity']}; the replica's is {replica_meta['identity']})")
    blob = store.get(f"generations/{generation}/snapshot.db.gz")
    if hashlib.sha256(blob).hexdigest() != snapshot["sha256"]:
        raise ReplicaError(f"{generation}/snapshot.db.gz does not match its SHA-256")
    pages = bytearray(gzip.decompress(blob))
    yield generation, None, pages
    index, expected_start = 0, snapshot["offset"]
    # What the next segment continues: the snapshot's WAL position first, then each segment's end.
    salts, chain_end = snapshot.get("salts"), snapshot.get("chain")
    for key, segment_index, segment_start, segment_end in _segment_keys(store, generation):
        if segment_index == index and segment_start < expected_start and segment_end <= expected_start:
            continue  # merged into the larger segment just applied (compaction deletes it next)
        meta = json.loads(store.get(key))
        points = meta.get("points")
        if at is not None and (points[0]["commitTime"] if points else meta["commitTime"]) > at:
            break
        # A merged segment keeps each commit point: restored to `at`, it stops at the last point not after it.
        cut = [p for p in points if p["commitTime"] <= at][-1] if at is not None and points and meta["commitTime"] > at else None
        where = key[len("generations/") : -len(".json")]
        if identity and meta.get("identity") and meta["identity"] != identity:
            raise ReplicaForeign(f"{where} belongs to another database (identity {meta['identity']}; the generation's is {identity})")
        if segment_index != index:
            if segment_index != index + 1:
                raise ReplicaError(f"WAL index {index + 1:08x} of {generation} is missing (found {segment_index:08x} after {index:08x})")
            if meta["start"] == WAL_HEADER and meta.get("previousIndexEnd") != expected_start:
                raise ReplicaError(f"a segment is missing at the end of WAL index {index:08x} (it ended at {expected_start}, {where} says {meta.get('previousIndexEnd')})")
            # A restart adds one to salt-1 (wal.c walRestartHdr): anything else is another WAL.
            if salts and meta["salts"][0] != (salts[0] + 1) & 0xFFFFFFFF:
                raise ReplicaError(f"{where} does not follow WAL index {index:08x} (salt-1 {meta['salts'][0]} after {salts[0]})")
            index, expected_start = segment_index, WAL_HEADER
        if meta["start"] != expected_start:
            raise ReplicaError(f"a segment is missing before {where} (it starts at {meta['start']}, the previous one ended at {expected_start})")
        if meta["start"] != WAL_HEADER and salts and (list(meta["salts"]) != list(salts) or list(meta["chainBefore"]) != list(chain_end or [])):
            raise ReplicaError(f"{where} does not continue what came before it (its salts or checksum chain start elsewhere)")
        data = store.get(key[: -len(".json")])
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ReplicaError(f"{where} does not match its SHA-256")
        frames = gzip.decompress(data)
        header = WalHeader(meta["bigEndian"], meta["pageSize"], 0, tuple(meta["salts"]), tuple(meta["chainBefore"]))
        end, chain, count = committed_frames(frames, header, 0, tuple(meta["chainBefore"]))
        if end != len(frames) or end != meta["end"] - meta["start"] or list(chain) != meta["chainAfter"]:
            raise ReplicaError(f"{where}: SQLite's checksums do not check (the frames were changed)")
        if cut:
            frames = frames[: cut["end"] - meta["start"]]
            end, chain, count = committed_frames(frames, header, 0, tuple(meta["chainBefore"]))
            if end != len(frames) or list(chain) != cut["chainAfter"]:
                raise ReplicaError(f"{where}: its commit point at {cut['end']} does not check")
        frame_size = FRAME_HEADER + meta["pageSize"]
        for at_byte in range(0, len(frames), frame_size):
            pgno, db_size = struct.unpack(">2I", frames[at_byte : at_byte + 8])
            page = frames[at_byte + FRAME_HEADER : at_byte + frame_size]
            offset = (pgno - 1) * meta["pageSize"]
            if len(pages) < offset + meta["pageSize"]:
                pages.extend(b"\0" * (offset + meta["pageSize"] - len(pages)))
            pages[offset : offset + meta["pageSize"]] = page
            if db_size:
                del pages[db_size * meta["pageSize"] :]
        yield generation, {**meta, "frames": count}, pages
        expected_start = cut["end"] if cut else meta["end"]
        salts, chain_end = meta["salts"], (cut or meta)["chainAfter"]
        if cut:
            break


def write_database(pages: bytes, target: Path) -> None:
    """Writes replayed pages as a self-contained database file at `target` (through `target`.partial), after
    SQLite's quick_check. @raises ReplicaError"""
    temporary = Path(f"{target}.partial")
    temporary.write_bytes(bytes(pages))
    try:
        check = sqlite3.connect(temporary, isolation_level=None)
        try:
            if check.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise ReplicaError("the replayed database fails quick_check")
            check.execute("PRAGMA journal_mode=DELETE")  # the snapshot's header says WAL: self-contained from here on
        finally:
            check.close()
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def restore(replica, target: Path, at: float | None = None) -> dict:
    """The database of the newest generation as of `at` (a Unix time; default: everything shipped), replayed (see
    replay) into `target`; nothing is written there when a segment fails its checks."""
    applied, generation, pages = 0, "", bytearray()
    for generation, meta, pages in replay(replica, at):
        applied += meta["frames"] if meta else 0
    write_database(pages, target)
    return {"generation": generation, "frames": applied}


DEFAULT_INTERVAL = 1.0
LOCK_RETRY_SECONDS = 5.0


class ReplicationService:
    """Replication while the server serves (MLFLOWCTL_REPLICA_URL): a daemon thread per server process; the one that
    holds `<state dir>/replica.lock` (a non-blocking flock, released by the kernel when its process dies) ships a
    round every MLFLOWCTL_REPLICA_INTERVAL seconds (default 1), the others wait to take over. `status()` is what
    /_mlflowctl/status reports."""

    def __init__(self, database: Path, replica_url: str, state_dir: Path, interval: float = DEFAULT_INTERVAL,
                 artifacts: Path | None = None, options: dict | None = None):
        self.database = Path(database)
        self.replica_url = replica_url
        self.state_dir = Path(state_dir)
        self.interval = interval
        self.artifacts = artifacts
        self.options = options or {}
        self.lock = threading.Lock()
        self.state: dict = {"url": redact(replica_url), "role": "starting", "generation": None, "walIndex": None, "offset": None,
                            "lastShippedAt": None, "lastRoundAt": None, "shippedFrames": 0, "lagSeconds": None, "lastError": None,
                            "refusedBecause": None, "resumed": None, "snapshotTakenAt": None, "checkpoints": 0,
                            "artifactsShipped": 0, "retentionSeconds": self.options.get("retention", DEFAULT_RETENTION),
                            "snapshotIntervalSeconds": self.options.get("snapshot_interval", DEFAULT_SNAPSHOT_INTERVAL),
                            "credentials": None}
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def status(self) -> dict:
        with self.lock:
            state = dict(self.state)
        if state["role"] == "replicating" and state["lastRoundAt"] is not None:
            # Lag: how long ago the last round that found the replica caught up began (commits after it are unshipped).
            state["lagSeconds"] = round(max(0.0, time.time() - state["lastRoundAt"]), 3)
        return state

    def _set(self, **fields) -> None:
        with self.lock:
            self.state.update(fields)

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
        if self.thread:
            self.thread.join(timeout=10)

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
            log_event("replica.started", "replicating the SQLite store", replica=redact(self.replica_url), interval_s=self.interval)
            replicator = None
            try:
                replicator = Replicator(self.database, self.replica_url, scratch=self.state_dir, artifacts=self.artifacts, **self.options)
                self._set(role="replicating")
                while not self.stop_event.is_set():
                    began = time.time()
                    try:
                        result = replicator.ship()
                        release_wal_hold()  # the first round resumed (or began) the generation under our own pins
                        self._set(generation=result["generation"], walIndex=replicator.wal_index, offset=replicator.offset,
                                  lastRoundAt=began, lastError=None, resumed=replicator.resumed,
                                  snapshotTakenAt=replicator.snapshot_taken_at, checkpoints=replicator.checkpoints,
                                  artifactsShipped=replicator.artifacts_shipped,
                                  **({"lastShippedAt": began, "shippedFrames": self.state["shippedFrames"] + result["frames"]} if result["frames"] else {}))
                    except ReplicaForeign:
                        raise  # another database's replica: refused for good (below), never retried
                    except Exception as exc:  # a full disk, an unreachable replica: reported, retried next round
                        self._set(lastError=redact(f"{type(exc).__name__}: {exc}"))
                        log_event("replica.round_failed", "a replication round failed; retrying", logging.WARNING, reason=redact(f"{type(exc).__name__}: {exc}"))
                    self.stop_event.wait(self.interval)
                try:
                    replicator.ship()
                except Exception as exc:  # stopping anyway: said in the log
                    log_event("replica.round_failed", "the last round before stopping failed", logging.WARNING, reason=redact(f"{type(exc).__name__}: {exc}"))
            except Exception as exc:  # WAL mode refused, an SDK missing, the replica unwritable: said in the status
                reason = str(exc) if isinstance(exc, ReplicaError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ImportError):
                    scheme = self.replica_url.split("://")[0]
                    reason = f"{scheme}:// replicas need {exc.name}, which this bundle does not install: render it with `mlflowctl init --replica-store {scheme}`"
                self._set(role="refused", refusedBecause=redact(reason))
                log_event("replica.refused", "replication refused", logging.WARNING, reason=redact(reason))
            finally:
                release_wal_hold()
                if replicator:
                    replicator.close()


NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph", "glusterfs", "fuse.glusterfs", "lustre", "gpfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "virtiofs"}


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


def hold_wal(storage, env) -> None:
    """Opens this process's first connection to the SQLite store, before the start-up steps that open and close
    their own, and pins its WAL with a read transaction until the replicator has resumed (release_wal_hold).

    A WAL that outlived its server (a SIGKILL, or a stop) holds commits the replica may already have, and its
    salts and checksum chain are what lets a new process resume the generation. When the last connection to a
    database closes, SQLite checkpoints the WAL into it and deletes it (and a checkpoint with no reader lets the
    next writer restart it): the schema check at start-up was that last connection, so no restart ever resumed.
    The connection stays open for the life of the process; only the pin goes."""
    global _HOLD
    if _HOLD is not None or not env.get("MLFLOWCTL_REPLICA_URL") or storage.mode != "local" or not storage.sqlite_path:
        return
    if not Path(storage.sqlite_path).exists():
        return  # a first start: nothing to resume
    connection = sqlite3.connect(storage.sqlite_path, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        connection.close()
        return
    _HOLD = connection


def release_wal_hold() -> None:
    """Ends hold_wal's read transaction (the replicator pins on its own now, or another process replicates)."""
    if _HOLD is not None and _HOLD.in_transaction:
        _HOLD.execute("COMMIT")


def start_replication(storage, env) -> ReplicationService | None:
    """Starts replication when MLFLOWCTL_REPLICA_URL is set. Local storage (the SQLite file) only. WAL mode is set
    here, before MLflow opens the store (it is persistent on the file; MLflow itself leaves the rollback journal)."""
    url = env.get("MLFLOWCTL_REPLICA_URL")
    if not url:
        return None
    try:
        options = {
            "retention": parse_duration(env.get("MLFLOWCTL_REPLICA_RETENTION"), DEFAULT_RETENTION),
            "snapshot_interval": parse_duration(env.get("MLFLOWCTL_REPLICA_SNAPSHOT_INTERVAL"), DEFAULT_SNAPSHOT_INTERVAL),
        }
        interval = parse_duration(env.get("MLFLOWCTL_REPLICA_INTERVAL"), DEFAULT_INTERVAL)
        refused = None
    except ValueError as exc:
        options, interval, refused = {}, DEFAULT_INTERVAL, f"MLFLOWCTL_REPLICA_*: {exc}"
    artifacts = Path(storage.artifacts_destination) if storage.mode == "local" and storage.artifacts_destination else None
    service = ReplicationService(storage.sqlite_path or Path("-"), url, storage.state_dir or Path("-"), interval, artifacts, options)
    if not storage.sqlite_path or not storage.state_dir:
        refused = "replication covers local storage (a SQLite file in the data directory) only"
    elif network := network_filesystem(storage.sqlite_path.parent):
        # sqlite.org/wal.html: "WAL does not work over a network filesystem" (its index lives in shared memory).
        refused = (f"the data directory is on {network}, a network file system, where SQLite's WAL (which replication "
                   "needs) does not work: put the content's data directory on a local disk, or unset MLFLOWCTL_REPLICA_URL")
    if refused:
        service._set(role="refused", refusedBecause=refused)
        log_event("replica.refused", "replication refused", logging.WARNING, reason=refused)
        return service
    with sqlite3.connect(storage.sqlite_path) as connection:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        service._set(role="refused", refusedBecause=f"the SQLite file cannot use WAL mode (journal mode {mode}; a network file system?)")
        log_event("replica.refused", "replication refused", logging.WARNING, reason=service.state["refusedBecause"])
        return service
    service.start()
    return service
