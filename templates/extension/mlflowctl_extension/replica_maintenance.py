"""What keeps a replica small: compaction of old segments, and deleting what no restore needs any more (generations past
retention, segments a merged one replaced). Nothing is deleted the moment it stops being needed: a restore that
listed the replica a little earlier may still read it, so deletions wait `grace` seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging

from .logs import log_event, redact
from .replica_layout import ReplicaError, generation_key, generations, segment_keys

# A merged segment holds at most this many bytes of frames.
COMPACT_BYTES = 64 << 20


def compact(store, eligible: list[tuple[str, dict]], now: float) -> int:
    """Merges runs of consecutive segments of one WAL index (at most COMPACT_BYTES of frames each) into one segment
    whose sidecar keeps each merged segment's end, commit time and chain (`points`) and when it was merged
    (`mergedAt`), so a restore reads a few large objects instead of one pair per second of writes and can still stop at
    any of the points. The merged segments stay until sweep_merged. Returns how many segments were merged away."""
    merged = 0
    while eligible:
        group = [eligible.pop(0)]
        size = group[0][1]["end"] - group[0][1]["start"]
        while (
            eligible
            and eligible[0][1]["start"] == group[-1][1]["end"]
            and eligible[0][1]["salts"] == group[0][1]["salts"]
            and size < COMPACT_BYTES
        ):
            size += eligible[0][1]["end"] - eligible[0][1]["start"]
            group.append(eligible.pop(0))
        if len(group) > 1:
            try:
                _merge(store, group, now)
                merged += len(group)
            except Exception as exc:  # a segment gone or changed, a store error: that run stays as it is
                log_event(
                    "replica.compaction",
                    "a run of segments was not merged",
                    logging.WARNING,
                    reason=redact(f"{type(exc).__name__}: {exc}"),
                )
    return merged


def _merge(store, group: list[tuple[str, dict]], now: float) -> None:
    frames = bytearray()
    points = []
    for key, meta in group:
        stored = store.get(key)
        if hashlib.sha256(stored).hexdigest() != meta["sha256"]:
            raise ReplicaError(f"{key} changed in the replica since it was written; not compacting it")
        frames += gzip.decompress(stored)
        points.append(
            {
                "end": meta["end"],
                "commitTime": meta["commitTime"],
                "chainAfter": meta["chainAfter"],
                "frames": meta["frames"],
            }
        )
    first, last = group[0][1], group[-1][1]
    compressed = gzip.compress(bytes(frames), compresslevel=1)
    name = group[0][0].rsplit("/", 1)[0] + f"/{first['start']:016x}-{last['end']:016x}.frames.gz"
    store.put(name, compressed)
    store.put(
        f"{name}.json",
        json.dumps(
            {
                **{
                    k: first[k]
                    for k in ("start", "salts", "bigEndian", "pageSize", "chainBefore", "identity")
                    if k in first
                },
                **({"previousIndexEnd": first["previousIndexEnd"]} if "previousIndexEnd" in first else {}),
                "end": last["end"],
                "chainAfter": last["chainAfter"],
                "commitTime": last["commitTime"],
                "readAt": last.get("readAt"),
                "frames": sum(point["frames"] for point in points),
                "sha256": hashlib.sha256(compressed).hexdigest(),
                "points": points,
                "mergedAt": now,
            },
            sort_keys=True,
        ).encode(),
    )


def sweep_merged(store, generation: str, now: float, grace: float) -> int:
    """Deletes the segments a merged segment replaced, once it was merged `grace` seconds ago (a merged segment of an
    older version, without mergedAt, by its last commit time). Returns how many segments went."""
    keys = segment_keys(store, generation)
    doomed: list[str] = []
    for key, index, start, end in keys:
        if not any(k[1] == index and k[2] >= start and k[3] <= end and k[0] != key for k in keys):
            continue  # merges nothing (still there)
        meta = json.loads(store.get(key))
        if "points" not in meta or meta.get("mergedAt", meta["commitTime"]) > now - grace:
            continue
        for other, other_index, other_start, other_end in keys:
            if other != key and other_index == index and other_start >= start and other_end <= end:
                doomed += [other, other[: -len(".json")]]
    if doomed:
        try:
            store.delete(sorted(set(doomed)))
        except Exception as exc:  # leftovers are harmless: restores prefer the merged segment
            log_event(
                "replica.compaction",
                "merged segments could not all be deleted",
                logging.WARNING,
                reason=redact(f"{type(exc).__name__}: {exc}"),
            )
    return len(doomed) // 2


def apply_retention(store, now: float, retention: float, grace: float, current: str | None) -> None:
    """Deletes each generation whose successor began before the retention window (and `grace` before that): nothing in
    the window needs it. Unfinished generations (a snapshot a crash interrupted) older than the current one go too."""
    cutoff = now - retention - grace
    found = generations(store)
    doomed = [g for (g, _), (_, after) in zip(found, found[1:], strict=False) if after["takenAt"] <= cutoff]
    finished = {g for g, _ in found}
    keys = store.list("generations/")
    doomed += sorted(
        {k.split("/")[1] for k, _ in keys if k.split("/")[1] not in finished and k.split("/")[1] < (current or "")}
    )
    for generation in doomed:
        store.delete([k for k, _ in keys if k.startswith(generation_key(generation, ""))])
        log_event("replica.retention", "deleted a generation older than the retention window", generation=generation)
