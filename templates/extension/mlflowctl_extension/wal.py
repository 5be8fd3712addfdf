"""SQLite's WAL, read from outside: the file format, the wal-index header in the -shm file, and where a run of
committed frames can be cut into segments.

The WAL (sqlite src/wal.c, header comment): a 32-byte header (magic 0x377f0682 or 0x377f0683, which picks the byte
order of the checksums; format; page size; checkpoint sequence; salt-1; salt-2; a checksum of the first 24 bytes), then
frames: a 24-byte header (page number; the database size in pages for a commit frame, else 0; the two salts; a
cumulative checksum of this frame's first 8 header bytes and page, continuing the previous frame's) and one page. A frame
counts only if its salts match the header's and its checksum continues the chain; a transaction counts only once its
commit frame does.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
MAGIC = (0x377F0682, 0x377F0683)


def wal_checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    """SQLite's WAL checksum (walChecksumBytes): over 32-bit words, two at a time, modulo 2**32."""
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass(frozen=True)
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


def committed_frames(
    data: bytes, header: WalHeader, start: int, checksum: tuple[int, int]
) -> tuple[int, tuple[int, int], int]:
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


def last_commit_within(data: bytes, header: WalHeader, limit: int) -> tuple[int, tuple[int, int], int] | None:
    """In `data` (frames SQLite has published as committed, from a frame boundary), the last commit frame ending at or
    before `limit` bytes (or, when a single transaction is larger, the first after it): its end, the checksum chain
    there (each frame header carries it) and the frames up to it; None when `data` holds no commit frame. Reads frame
    headers only: the wal-index already vouches for these frames, so nothing is checksummed here."""
    frame_size = FRAME_HEADER + header.page_size
    best = None
    for at in range(0, len(data) - frame_size + 1, frame_size):
        _pgno, db_size, _s1, _s2, c1, c2 = struct.unpack(">6I", data[at : at + FRAME_HEADER])
        if not db_size:
            continue
        end = at + frame_size
        if end > limit and best is not None:
            break
        best = (end, (c1, c2), end // frame_size)
        if end >= limit:
            break
    return best


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


class WalFile:
    """The -wal and -shm files of one database, read without ever closing a descriptor SQLite's locks depend on (the
    WAL itself carries no lock, so it is opened per read)."""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = Path(f"{database}-wal")

    def header(self) -> WalHeader | None:
        try:
            with open(self.path, "rb") as handle:
                return parse_wal_header(handle.read(WAL_HEADER))
        except FileNotFoundError:
            return None

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, start: int, length: int | None = None) -> tuple[WalHeader | None, bytes]:
        """The header and `length` bytes from `start` (to the end when None)."""
        try:
            with open(self.path, "rb") as handle:
                header = parse_wal_header(handle.read(WAL_HEADER))
                handle.seek(start)
                return header, handle.read() if length is None else handle.read(length)
        except FileNotFoundError:
            return None, b""

    def committed_end(self, header: WalHeader) -> tuple[int, tuple[int, int]] | None:
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
        _, last = self.read(end - frame_size, FRAME_HEADER)
        if len(last) < FRAME_HEADER:
            return None
        _pgno, commit, fsalt1, fsalt2, f1, f2 = struct.unpack(">6I", last)
        if not commit or (fsalt1, fsalt2) != header.salts or (f1, f2) != (c1, c2):
            return None
        return end, (c1, c2)
