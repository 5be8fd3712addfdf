"""Continuous replication of the SQLite store (issue 19; docs/design/replication.md): the WAL, read while a read
transaction pins it, shipped as checked segments after a snapshot, and restored to any shipped commit.

The WAL format, one replication round against a directory replica (Replicator), the restore that replays a replica
into a database file, and the service that runs rounds while the server serves (ReplicationService; started by
server.build_app when MLFLOWCTL_REPLICA_URL is set). Not yet: object-store replicas, retention and periodic
snapshots, the replicator's own checkpoints, the CLI's restore (docs/design/replication.md).

SQLite's WAL (sqlite src/wal.c, header comment): a 32-byte header (magic 0x377f0682 or 0x377f0683, which picks the
byte order of the checksums; format; page size; checkpoint sequence; salt-1; salt-2; a checksum of the first 24
bytes), then frames: a 24-byte header (page number; the database size in pages for a commit frame, else 0; the two
salts; a cumulative checksum of this frame's first 8 header bytes and page, continuing the previous frame's) and one
page. A frame counts only if its salts match the header's and its checksum continues the chain; a transaction
counts only once its commit frame does.
"""
from __future__ import annotations

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

from .logs import log_event, redact

WAL_HEADER = 32
FRAME_HEADER = 24
MAGIC = (0x377F0682, 0x377F0683)
REPLICA_FORMAT = 1


class ReplicaError(Exception):
    """A replica that cannot be restored past some point: the reason names the segment and what is wrong."""


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


def _write_json(path: Path, value: dict) -> None:
    temporary = path.with_suffix(path.suffix + ".partial")
    temporary.write_text(json.dumps(value, sort_keys=True))
    os.replace(temporary, path)


def _write_blob(path: Path, data: bytes) -> str:
    """Writes gzip(data) atomically; returns the SHA-256 of what was written."""
    compressed = gzip.compress(data, compresslevel=1)
    temporary = path.with_suffix(path.suffix + ".partial")
    with open(temporary, "wb") as handle:
        handle.write(compressed)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return hashlib.sha256(compressed).hexdigest()


def _write_file_gz(source: Path, path: Path) -> str:
    """gzip(source) written atomically to `path`, streamed; returns the SHA-256 of what was written."""
    temporary = path.with_suffix(path.suffix + ".partial")
    with open(source, "rb") as data, open(temporary, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as out:
            while block := data.read(1 << 20):
                out.write(block)
        raw.flush()
        os.fsync(raw.fileno())
    digest = hashlib.sha256()
    with open(temporary, "rb") as written:
        while block := written.read(1 << 20):
            digest.update(block)
    os.replace(temporary, path)
    return digest.hexdigest()


def generation_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + os.urandom(3).hex()


class Replicator:
    """Ships the database's committed WAL frames to a directory replica, one round at a time (`ship`).

    No frame may be overwritten before it is shipped. SQLite restarts the WAL (new salts, writing from its start)
    only once a checkpoint has copied every frame into the database and no reader still reads from the WAL, and a
    checkpoint cannot copy frames past the read mark of an open read transaction. So the replicator always holds a
    read transaction (a pin) on one of two connections, and moves it forward each round by pinning the other
    connection before it lets the first go: between rounds the WAL can only restart after every frame up to the pin
    was shipped. A WAL found restarted then continues the history in a new WAL index; anything that does not
    continue (the first round, a database file replaced, a gap) starts a new generation with a snapshot.

    Position: the WAL's salts, the byte offset after the last shipped commit frame, and SQLite's checksum chain there.
    """

    def __init__(self, database: Path, replica: Path, now=time.time):
        self.database = Path(database)
        self.wal = Path(f"{database}-wal")
        self.replica = Path(replica)
        self.now = now
        self.generation: str | None = None
        self.salts: tuple[int, int] | None = None
        self.offset = 0
        self.chain: tuple[int, int] = (0, 0)
        self.wal_index = 0
        # Where the previous WAL index ended, told by the first segment of the next (so a lost last segment shows).
        self.previous_end: int | None = None
        self.pins = [sqlite3.connect(self.database, isolation_level=None, check_same_thread=False) for _ in range(2)]
        self.pinned: int | None = None
        if self.pins[0].execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise ReplicaError(f"{self.database} cannot use WAL mode (a network file system?): replication needs it")

    def close(self) -> None:
        for connection in self.pins:
            if connection.in_transaction:
                connection.execute("COMMIT")
            connection.close()

    def _repin(self) -> None:
        """Pins the other connection at the newest commit, then releases the old pin: never a moment without one."""
        nxt = 0 if self.pinned != 0 else 1
        self.pins[nxt].execute("BEGIN")
        self.pins[nxt].execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
        if self.pinned is not None:
            self.pins[self.pinned].execute("COMMIT")
        self.pinned = nxt

    def _generation_dir(self) -> Path:
        return self.replica / "generations" / self.generation  # type: ignore[operator]

    def _new_generation(self) -> None:
        """A snapshot and the WAL position it corresponds to, exactly: while a write transaction keeps every writer
        out, the WAL's committed end is read and a read transaction pins that state; then writers go on, and the
        snapshot is copied from the pin at leisure (SQLite's online backup API)."""
        self.generation = generation_id(self.now())
        directory = self._generation_dir()
        (directory / "wal" / "00000000").mkdir(parents=True, exist_ok=True)  # each WAL index has its directory
        _write_json(self.replica / "mlflowctl-replica.json", {"format": REPLICA_FORMAT})
        if self.pinned is not None:
            self.pins[self.pinned].execute("COMMIT")
            self.pinned = None
        writer, reader = self.pins
        writer.execute("BEGIN IMMEDIATE")
        try:
            wal = self.wal.read_bytes() if self.wal.exists() else b""
            header = parse_wal_header(wal)
            if header:
                self.offset, self.chain, _ = committed_frames(wal, header, WAL_HEADER, header.checksum)
                self.salts = header.salts
            else:
                self.offset, self.chain, self.salts = 0, (0, 0), None
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            writer.execute("COMMIT")
        self.pinned = 1
        # Into a file beside the replica's snapshot, not memory: the database may be gigabytes.
        staged = directory / "snapshot.db.partial-copy"
        copy = sqlite3.connect(staged)
        try:
            reader.backup(copy)
        finally:
            copy.close()
        size = staged.stat().st_size
        sha = _write_file_gz(staged, directory / "snapshot.db.gz")
        staged.unlink()
        self.wal_index = 0
        _write_json(directory / "snapshot.json", {
            "sha256": sha, "bytes": size, "takenAt": self.now(), "walIndex": 0, "offset": self.offset,
            "salts": list(self.salts) if self.salts else None,
        })

    def ship(self) -> dict:
        """One round: ship the committed frames after the position as one segment, then move the pin forward.
        Returns what it did: {"generation", "segment" (a path, or None), "frames", "newGeneration"}."""
        if self.generation is None:
            self._new_generation()
            return {"generation": self.generation, "segment": None, "frames": 0, "newGeneration": True}
        wal = self.wal.read_bytes() if self.wal.exists() else b""
        header = parse_wal_header(wal)
        result = {"generation": self.generation, "segment": None, "frames": 0, "newGeneration": False}
        if header is None:
            self._repin()
            return result
        start, chain, index = self.offset, self.chain, self.wal_index
        if header.salts != self.salts:
            # Restarted since the last round: by the pin's rule every frame of the old WAL was shipped.
            start, chain, index = WAL_HEADER, header.checksum, self.wal_index + 1
            self.previous_end = self.offset
            (self._generation_dir() / "wal" / f"{index:08x}").mkdir(parents=True, exist_ok=True)  # even if empty
        end, end_chain, frames = committed_frames(wal, header, start, chain)
        if frames > 0:
            directory = self._generation_dir() / "wal" / f"{index:08x}"
            directory.mkdir(parents=True, exist_ok=True)
            name = f"{start:016x}-{end:016x}.frames.gz"
            sha = _write_blob(directory / name, wal[start:end])
            _write_json(directory / f"{name}.json", {
                "sha256": sha, "frames": frames, "start": start, "end": end, "commitTime": self.now(),
                "salts": list(header.salts), "bigEndian": header.big_endian, "pageSize": header.page_size,
                "chainBefore": list(chain), "chainAfter": list(end_chain),
                **({"previousIndexEnd": self.previous_end} if start == WAL_HEADER and self.previous_end is not None else {}),
            })
            if start == WAL_HEADER:
                self.previous_end = None
            result.update(segment=str(directory / name), frames=frames)
        self.salts, self.offset, self.chain, self.wal_index = header.salts, (end if frames else start), (end_chain if frames else chain), index
        self._repin()
        return result


def restore(replica: Path, target: Path, at: float | None = None) -> dict:
    """Rebuilds the database of the newest generation as of `at` (a Unix time; default: everything shipped) into
    `target`: the snapshot, then each segment's committed frames in order. Every segment is checked (its SHA-256,
    its salts and SQLite's checksum chain, and that it starts where the previous one ended); the first that fails stops
    the restore with ReplicaError, and nothing is written to `target`."""
    generations = sorted((Path(replica) / "generations").iterdir()) if (Path(replica) / "generations").exists() else []
    if not generations:
        raise ReplicaError(f"{replica} holds no generation")
    chosen = None
    for directory in reversed(generations):
        snapshot = json.loads((directory / "snapshot.json").read_text())
        if at is None or snapshot["takenAt"] <= at:
            chosen = (directory, snapshot)
            break
    if chosen is None:
        raise ReplicaError(f"{replica} holds nothing as old as {at}")
    directory, snapshot = chosen
    blob = (directory / "snapshot.db.gz").read_bytes()
    if hashlib.sha256(blob).hexdigest() != snapshot["sha256"]:
        raise ReplicaError(f"{directory.name}/snapshot.db.gz does not match its SHA-256")
    pages = bytearray(gzip.decompress(blob))
    applied = 0
    previous_end = None
    for number, index_dir in enumerate(sorted((directory / "wal").iterdir())):
        if index_dir.name != f"{number:08x}":
            raise ReplicaError(f"{directory.name}/wal/{number:08x} is missing (found {index_dir.name} after it)")
        expected_start = snapshot["offset"] if number == 0 else WAL_HEADER
        for meta_path in sorted(index_dir.glob("*.frames.gz.json")):
            meta = json.loads(meta_path.read_text())
            if at is not None and meta["commitTime"] > at:
                break
            name = meta_path.name[: -len(".json")]
            where = f"{directory.name}/wal/{index_dir.name}/{name}"
            if meta["start"] == WAL_HEADER and number > 0 and meta.get("previousIndexEnd") != previous_end:
                raise ReplicaError(f"a segment is missing at the end of WAL index {number - 1:08x} (it ended at {previous_end}, {where} says {meta.get('previousIndexEnd')})")
            if meta["start"] != expected_start:
                raise ReplicaError(f"a segment is missing before {where} (it starts at {meta['start']}, the previous one ended at {expected_start})")
            data = (index_dir / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ReplicaError(f"{where} does not match its SHA-256")
            frames = gzip.decompress(data)
            header = WalHeader(meta["bigEndian"], meta["pageSize"], 0, tuple(meta["salts"]), tuple(meta["chainBefore"]))
            end, chain, count = committed_frames(frames, header, 0, tuple(meta["chainBefore"]))
            if end != len(frames) or end != meta["end"] - meta["start"] or list(chain) != meta["chainAfter"]:
                raise ReplicaError(f"{where}: SQLite's checksums do not check (the frames were changed)")
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
            applied += count
            expected_start = meta["end"]
        previous_end = expected_start
    # The file is a rollback-journal database from here on: the snapshot came from the backup API.
    temporary = Path(f"{target}.partial")
    temporary.write_bytes(bytes(pages))
    check = sqlite3.connect(temporary)
    try:
        if check.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise ReplicaError("the replayed database fails quick_check")
    finally:
        check.close()
    os.replace(temporary, target)
    return {"generation": directory.name, "frames": applied}


DEFAULT_INTERVAL = 1.0
LOCK_RETRY_SECONDS = 5.0


class ReplicationService:
    """Replication while the server serves (MLFLOWCTL_REPLICA_URL): a daemon thread per server process; the one that
    holds `<state dir>/replica.lock` (a non-blocking flock, released by the kernel when its process dies) ships a
    round every MLFLOWCTL_REPLICA_INTERVAL seconds (default 1), the others wait to take over. `status()` is what
    /_mlflowctl/status reports. Not yet: object-store replicas (refused, and said in the status), retention, the
    periodic snapshot, and the replicator's own checkpoints (docs/design/replication.md)."""

    def __init__(self, database: Path, replica_url: str, state_dir: Path, interval: float = DEFAULT_INTERVAL):
        self.database = Path(database)
        self.replica_url = replica_url
        self.state_dir = Path(state_dir)
        self.interval = interval
        self.lock = threading.Lock()
        self.state: dict = {"url": redact(replica_url), "role": "starting", "generation": None, "walIndex": None, "offset": None,
                            "lastShippedAt": None, "lastRoundAt": None, "shippedFrames": 0, "lagSeconds": None, "lastError": None,
                            "refusedBecause": None}
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
        if re.match(r"^(s3|wasbs|gs)://", self.replica_url):
            self._set(role="refused", refusedBecause="object-store replicas are not implemented yet: use a directory")
            log_event("replica.refused", "replication refused", logging.WARNING, reason=self.state["refusedBecause"])
            return
        self.thread = threading.Thread(target=self._run, name="mlflowctl-replica", daemon=True)
        self.thread.start()

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
                    self.stop_event.wait(LOCK_RETRY_SECONDS)
            if self.stop_event.is_set():
                return
            log_event("replica.started", "replicating the SQLite store", replica=self.replica_url, interval_s=self.interval)
            replicator = None
            try:
                replicator = Replicator(self.database, Path(self.replica_url))
                self._set(role="replicating")
                while not self.stop_event.is_set():
                    began = time.time()
                    try:
                        result = replicator.ship()
                        self._set(generation=result["generation"], walIndex=replicator.wal_index, offset=replicator.offset,
                                  lastRoundAt=began, lastError=None,
                                  **({"lastShippedAt": began, "shippedFrames": self.state["shippedFrames"] + result["frames"]} if result["frames"] else {}))
                    except Exception as exc:  # a full disk, an unreachable replica: reported, retried next round
                        self._set(lastError=f"{type(exc).__name__}: {exc}")
                        log_event("replica.round_failed", "a replication round failed; retrying", logging.WARNING, reason=f"{type(exc).__name__}: {exc}")
                    self.stop_event.wait(self.interval)
            except Exception as exc:  # WAL mode refused, the replica directory unwritable: said in the status
                self._set(role="refused", refusedBecause=f"{type(exc).__name__}: {exc}" if not isinstance(exc, ReplicaError) else str(exc))
                log_event("replica.refused", "replication refused", logging.WARNING, reason=str(exc))
            finally:
                if replicator:
                    replicator.close()


def start_replication(storage, env) -> ReplicationService | None:
    """Starts replication when MLFLOWCTL_REPLICA_URL is set. Local storage (the SQLite file) only. WAL mode is set
    here, before MLflow opens the store (it is persistent on the file; MLflow itself leaves the rollback journal)."""
    url = env.get("MLFLOWCTL_REPLICA_URL")
    if not url:
        return None
    service = ReplicationService(storage.sqlite_path or Path("-"), url, storage.state_dir or Path("-"), float(env.get("MLFLOWCTL_REPLICA_INTERVAL") or DEFAULT_INTERVAL))
    if not storage.sqlite_path or not storage.state_dir:
        service._set(role="refused", refusedBecause="replication covers local storage (a SQLite file in the data directory) only")
        log_event("replica.refused", "replication refused", logging.WARNING, reason=service.state["refusedBecause"])
        return service
    with sqlite3.connect(storage.sqlite_path) as connection:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        service._set(role="refused", refusedBecause=f"the SQLite file cannot use WAL mode (journal mode {mode}; a network file system?)")
        log_event("replica.refused", "replication refused", logging.WARNING, reason=service.state["refusedBecause"])
        return service
    service.start()
    return service
