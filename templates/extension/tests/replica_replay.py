"""The replica replayed into a database, in Python, for the tests: the snapshot, then each segment's frames, every
segment checked as it comes. The product's restore is the CLI's (src/adapters/backup/replica-source.ts), which checks the
same things; this one lets a test replay a replica as of every segment in one pass."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
import struct
from pathlib import Path
from typing import Iterator

from mlflowctl_extension.replica_layout import ReplicaError, ReplicaForeign, generations, segment_keys
from mlflowctl_extension.replica_store import open_store
from mlflowctl_extension.wal import FRAME_HEADER, WAL_HEADER, WalHeader, committed_frames


def replay(replica, at: float | None = None) -> Iterator[tuple[str, dict | None, bytearray]]:
    """Rebuilds the database of the newest generation as of `at` (a Unix time; default: everything shipped): yields
    the generation and the database's pages after its snapshot (with None), then after each segment it applies (with
    its sidecar, `frames` the frames applied from it). Every
    segment is checked (its SHA-256, its salts and SQLite's checksum chain, and that it starts where the previous one
    ended); the first that fails raises ReplicaError."""
    store = open_store(replica)
    found = generations(store)
    if not found:
        raise ReplicaError(f"{store.url} holds no generation")
    chosen = next(((g, s) for g, s in reversed(found) if at is None or s["takenAt"] <= at), None)
    if chosen is None:
        raise ReplicaError(f"{store.url} holds nothing as old as {at}")
    generation, snapshot = chosen
    # The replica's database, the generation's and each segment's must be one (two deployments on one URL, a
    # generation or segment copied in from another database).
    replica_meta = json.loads(store.find("mlflowctl-replica.json") or b"{}")
    identity = snapshot.get("identity") or replica_meta.get("identity")
    if replica_meta.get("identity") and snapshot.get("identity") and snapshot["identity"] != replica_meta["identity"]:
        raise ReplicaForeign(
            f"generation {generation} belongs to another database (identity {snapshot['identity']}; the replica's is {replica_meta['identity']})"
        )
    blob = store.get(f"generations/{generation}/snapshot.db.gz")
    if hashlib.sha256(blob).hexdigest() != snapshot["sha256"]:
        raise ReplicaError(f"{generation}/snapshot.db.gz does not match its SHA-256")
    pages = bytearray(gzip.decompress(blob))
    yield generation, None, pages
    index, expected_start = 0, snapshot["offset"]
    # What the next segment continues: the snapshot's WAL position first, then each segment's end.
    salts, chain_end = snapshot.get("salts"), snapshot.get("chain")
    for key, segment_index, segment_start, segment_end in segment_keys(store, generation):
        if segment_index == index and segment_start < expected_start and segment_end <= expected_start:
            continue  # merged into the larger segment just applied (compaction deletes it next)
        meta = json.loads(store.get(key))
        points = meta.get("points")
        if at is not None and (points[0]["commitTime"] if points else meta["commitTime"]) > at:
            break
        # A merged segment keeps each commit point: restored to `at`, it stops at the last point not after it.
        cut = (
            [p for p in points if p["commitTime"] <= at][-1]
            if at is not None and points and meta["commitTime"] > at
            else None
        )
        where = key[len("generations/") : -len(".json")]
        if identity and meta.get("identity") and meta["identity"] != identity:
            raise ReplicaForeign(
                f"{where} belongs to another database (identity {meta['identity']}; the generation's is {identity})"
            )
        if segment_index != index:
            if segment_index != index + 1:
                raise ReplicaError(
                    f"WAL index {index + 1:08x} of {generation} is missing (found {segment_index:08x} after {index:08x})"
                )
            if meta["start"] == WAL_HEADER and meta.get("previousIndexEnd") != expected_start:
                raise ReplicaError(
                    f"a segment is missing at the end of WAL index {index:08x} (it ended at {expected_start}, {where} says {meta.get('previousIndexEnd')})"
                )
            # A restart adds one to salt-1 (wal.c walRestartHdr): anything else is another WAL.
            if salts and meta["salts"][0] != (salts[0] + 1) & 0xFFFFFFFF:
                raise ReplicaError(
                    f"{where} does not follow WAL index {index:08x} (salt-1 {meta['salts'][0]} after {salts[0]})"
                )
            index, expected_start = segment_index, WAL_HEADER
        if meta["start"] != expected_start:
            raise ReplicaError(
                f"a segment is missing before {where} (it starts at {meta['start']}, the previous one ended at {expected_start})"
            )
        if (
            meta["start"] != WAL_HEADER
            and salts
            and (list(meta["salts"]) != list(salts) or list(meta["chainBefore"]) != list(chain_end or []))
        ):
            raise ReplicaError(
                f"{where} does not continue what came before it (its salts or checksum chain start elsewhere)"
            )
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
    for generation, meta, pages in replay(replica, at):  # noqa: B007 - the last round's generation and pages are kept
        applied += meta["frames"] if meta else 0
    write_database(pages, target)
    return {"generation": generation, "frames": applied}
