"""The replica's layout, defined once: the keys, what each JSON file holds, and how generations and segments are found.
The CLI reads the same layout (src/adapters/backup/replica-source.ts, with zod schemas of these shapes).

    mlflowctl-replica.json                      {format, database, identity, artifactsRoot}
    generations/<id>/snapshot.db.gz             the database at the generation's start (SQLite's online backup, gzip)
    generations/<id>/snapshot.json              {sha256, bytes, takenAt, walIndex, offset, salts, chain, pageSize,
                                                 identity}; written last: a generation without it is unfinished
    generations/<id>/wal/<index>/<start>-<end>.frames.gz
                                                committed WAL frames of one WAL index (hex, 8 and 16 digits)
    ….frames.gz.json                            {sha256, frames, start, end, commitTime, readAt, salts, bigEndian,
                                                 pageSize, chainBefore, chainAfter, identity, previousIndexEnd?,
                                                 points? and mergedAt? for a merged segment}
    artifacts/<path>                            the artifact files, by path under the artifact root
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

REPLICA_FORMAT = 1
META_KEY = "mlflowctl-replica.json"
IDENTITY_FILE = "replica-identity"
SEGMENT_KEY = re.compile(r"^generations/([^/]+)/wal/([0-9a-f]{8})/([0-9a-f]{16})-([0-9a-f]{16})\.frames\.gz\.json$")


# Each JSON file's fields: name → (required, check). The CLI reads the same shapes with zod schemas
# (replica-source.ts); test/data/shared-shapes.json holds examples that both test suites check against their own.
Check = Callable[[Any], bool]


def _count(minimum: int = 0) -> Check:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _sha256(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _pair(value: Any) -> bool:
    """SQLite's salts and checksum chain: two 32-bit words."""
    return isinstance(value, list) and len(value) == 2 and all(_count(-(2**63))(word) for word in value)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _nullable(check: Check) -> Check:
    return lambda value: value is None or check(value)


# Every field optional: a replica made before a field existed (or an empty {}) is read as it is.
META_FIELDS: Mapping[str, tuple[bool, Check]] = {
    "format": (False, _count(1)),
    "database": (False, _text),
    "identity": (False, _text),
    "artifactsRoot": (False, _nullable(_text)),
}
SNAPSHOT_FIELDS: Mapping[str, tuple[bool, Check]] = {
    "sha256": (True, _sha256),
    "bytes": (True, _count()),
    "takenAt": (True, _number),
    "offset": (True, _count()),
    "walIndex": (False, _count()),
    "salts": (False, _nullable(_pair)),
    "chain": (False, _pair),
    "pageSize": (False, _count(1)),
    "identity": (False, _text),
}
POINT_FIELDS: Mapping[str, tuple[bool, Check]] = {
    "end": (True, _count()),
    "commitTime": (True, _number),
    "chainAfter": (True, _pair),
    "frames": (False, _count()),
}
SEGMENT_FIELDS: Mapping[str, tuple[bool, Check]] = {
    "sha256": (True, _sha256),
    "frames": (True, _count()),
    "start": (True, _count()),
    "end": (True, _count()),
    "commitTime": (True, _number),
    "readAt": (False, _nullable(_number)),
    "salts": (True, _pair),
    "bigEndian": (True, _flag),
    "pageSize": (True, _count(1)),
    "chainBefore": (True, _pair),
    "chainAfter": (True, _pair),
    "previousIndexEnd": (False, _nullable(_count())),
    "identity": (False, _text),
    "points": (
        False,
        lambda value: isinstance(value, list) and all(shape_problem(POINT_FIELDS, point) is None for point in value),
    ),
    "mergedAt": (False, _number),
}


def shape_problem(fields: Mapping[str, tuple[bool, Check]], data: Any) -> str | None:
    """What is wrong with a JSON file of the layout, or None. Fields it does not name are left alone."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for name, (required, check) in fields.items():
        if name not in data:
            if required:
                return f"{name} is missing"
        elif not check(data[name]):
            return f"{name}: {data[name]!r} is not valid"
    return None


class ReplicaError(Exception):
    """A replica that cannot be restored past some point: the reason names the segment and what is wrong."""


class ReplicaForeign(ReplicaError):
    """A replica, generation or segment of another database than the one being replicated or restored."""


def generation_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + os.urandom(3).hex()


def generation_key(generation: str, name: str) -> str:
    return f"generations/{generation}/{name}"


def segment_name(index: int, start: int, end: int) -> str:
    return f"wal/{index:08x}/{start:016x}-{end:016x}.frames.gz"


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


def read_meta(store) -> dict:
    """mlflowctl-replica.json, or {} when there is none (an empty replica) or it does not parse."""
    found = store.find(META_KEY)
    try:
        meta = json.loads(found) if found else {}
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def generations(store) -> list[tuple[str, dict]]:
    """Finished generations (those with snapshot.json), oldest first, with their snapshot.json."""
    ids = sorted(
        {
            key.split("/")[1]
            for key, _ in store.list("generations/")
            if key.endswith("/snapshot.json") and key.count("/") == 2
        }
    )
    found = [(g, json.loads(store.get(generation_key(g, "snapshot.json")))) for g in ids]
    # By the snapshot's time: two generations begun in the same second have IDs that sort by their random part.
    return sorted(found, key=lambda entry: (entry[1]["takenAt"], entry[0]))


def segment_keys(store, generation: str) -> list[tuple[str, int, int, int]]:
    """The sidecar keys of a generation's segments with their WAL index, start and end, in replay order (a merged
    segment before the ones it merged, while they still exist)."""
    found = []
    for key, _ in store.list(f"generations/{generation}/wal/"):
        match = SEGMENT_KEY.match(key)
        if match:
            found.append((key, int(match.group(2), 16), int(match.group(3), 16), int(match.group(4), 16)))
    return sorted(found, key=lambda entry: (entry[1], entry[2], -entry[3]))
