"""Snapshot and restore of local-storage data through the ops endpoint (POST /_mlflowctl/snapshot and
POST /_mlflowctl/restore), so that a deployment on Connect is backed up and restored from an ops box.

Snapshot: a consistent copy of mlflow.db through SQLite's online backup API (safe while MLflow writes),
streamed with the artifact files as an uncompressed tar, file by file in 1 MiB chunks: memory stays flat.

Restore: the uploaded tar (mlflow.db at any known revision + artifacts/) is extracted beside the data,
checked and migrated to this MLflow's head, then swapped in under maintenance (every non-ops request gets
503, in every process, through a flag file): the database through the backup API (one transaction, seen by
every open connection), the artifacts by two renames. Any failure puts the previous database and
artifacts back.

Held restore (X-Mlflowctl-Keep-Revision: 1, used by `upgrade apply` to roll back after a new bundle was
activated): the upload is swapped in at its own, older revision, not migrated, and a hold file names this
MLflow's head: processes of this bundle answer 503 from then on (their schema is ahead of the data), and the
bundle that matches the data clears the hold when it starts.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import sqlite3
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .logs import log_event
from .settings import StorageConfig

CHUNK = 1 << 20
MAINTENANCE_FLAG = ".mlflowctl-maintenance"
HOLD_FILE = ".mlflowctl-held"
RESTORE_LOCK = ".mlflowctl-restore.lock"


class TransferError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _local(storage: StorageConfig) -> tuple[Path, Path, Path]:
    """The SQLite file, the artifacts directory and the data directory of local storage; refused for any other."""
    if storage.mode != "local" or storage.sqlite_path is None or storage.data_dir is None:
        raise TransferError(
            409,
            "NOT_LOCAL_STORAGE",
            f"This deployment keeps its data in {storage.mode} storage: back up the database and the artifact store directly (mlflowctl backup create --source postgresql://…).",
        )
    return storage.sqlite_path, Path(storage.artifacts_destination), storage.data_dir


def maintenance_active(storage: StorageConfig) -> bool:
    return storage.data_dir is not None and (
        (storage.data_dir / MAINTENANCE_FLAG).exists() or held_for_this_bundle(storage)
    )


def _held_head(storage: StorageConfig) -> str | None:
    if storage.data_dir is None:
        return None
    try:
        return json.loads((storage.data_dir / HOLD_FILE).read_text())["head"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def held_for_this_bundle(storage: StorageConfig) -> bool:
    """True when a held restore put data older than this MLflow's schema in place: serving it would fail."""
    if storage.data_dir is None or not (storage.data_dir / HOLD_FILE).exists():
        return False
    from .migrations import expected_head

    return _held_head(storage) == expected_head()


def _sqlite_copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(str(source))
    try:
        dest = sqlite3.connect(str(target))
        try:
            with dest:
                src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()


def _tar_entry(name: str, path: Path) -> Iterator[bytes]:
    size = path.stat().st_size
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, 0
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    remaining = size
    with open(path, "rb") as handle:
        while remaining:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError(f"{name} shrank while it was read")
            remaining -= len(chunk)
            yield chunk
    if size % 512:
        yield b"\0" * (512 - size % 512)


TRAILER = "transfer.json"


def _trailer(files: int, size: int) -> Iterator[bytes]:
    """The last entry: how many files and bytes came before it. A transfer cut at an entry boundary still
    looks like a valid tar; without this trailer, or with other counts, it is refused."""
    body = json.dumps({"files": files, "bytes": size}).encode()
    info = tarfile.TarInfo(TRAILER)
    info.size, info.mode, info.mtime = len(body), 0o600, 0
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    yield body + b"\0" * ((512 - len(body) % 512) % 512)


def snapshot_stream(storage: StorageConfig, for_backup: bool = False) -> Iterator[bytes]:
    """The tar stream: db/mlflow.db first, then artifacts/<path>, then the trailer. Raises TransferError
    before streaming; the database copy is made only once the response is being sent."""
    db, artifacts, data_dir = _local(storage)

    def stream() -> Iterator[bytes]:
        work = data_dir / f".mlflowctl-snapshot-{os.getpid()}-{time.time_ns()}.db"
        try:
            _sqlite_copy(db, work)
            work.chmod(0o600)
            log_event("ops.snapshot", "streaming a snapshot", bytes=work.stat().st_size)
            files, size = 1, work.stat().st_size
            yield from _tar_entry("db/mlflow.db", work)
            if artifacts.is_dir():
                for root, dirs, names in os.walk(artifacts):
                    dirs.sort()
                    for name in sorted(names):
                        path = Path(root) / name
                        if path.is_symlink() or not path.is_file():
                            continue
                        files, size = files + 1, size + path.stat().st_size
                        yield from _tar_entry("artifacts/" + path.relative_to(artifacts).as_posix(), path)
            yield from _trailer(files, size)
            yield b"\0" * 1024
            # Every byte was taken by a backup: what the status (and a monitor's backup-age check) reports. Whether
            # its repository then committed it, the extension cannot know.
            if for_backup:
                record_snapshot(storage, files, size)
        finally:
            work.unlink(missing_ok=True)

    return stream()


LAST_SNAPSHOT_FILE = "last-snapshot.json"


def record_snapshot(storage: StorageConfig, files: int, size: int) -> None:
    if storage.state_dir is None:
        return
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files, "bytes": size}
    partial = storage.state_dir / (LAST_SNAPSHOT_FILE + ".partial")
    try:
        partial.write_text(json.dumps(entry))
        os.replace(partial, storage.state_dir / LAST_SNAPSHOT_FILE)
    except OSError as exc:
        log_event("ops.snapshot", f"could not record the snapshot: {exc.strerror}", logging.WARNING)


def last_snapshot(storage: StorageConfig) -> dict[str, Any] | None:
    """The last snapshot a reader took whole ({at, files, bytes}), or None."""
    if storage.state_dir is None:
        return None
    try:
        return json.loads((storage.state_dir / LAST_SNAPSHOT_FILE).read_text())
    except (OSError, ValueError):
        return None


# Tables whose rows are users' data; a fresh store has none (only experiment 0 and seeded rows elsewhere).
DATA_TABLES = (
    "runs",
    "registered_models",
    "trace_info",
    "logged_models",
    "datasets",
    "evaluation_datasets",
    "scorers",
    "prompts",
    "webhooks",
    "secrets",
)


def has_data(db: Path, artifacts: Path | None = None) -> bool:
    if artifacts is not None and artifacts.is_dir() and any(artifacts.iterdir()):
        return True
    if not db.exists() or db.stat().st_size == 0:
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" in tables and conn.execute("SELECT count(*) FROM experiments").fetchone()[0] > 1:
            return True  # experiment 0 (Default) alone is an empty store
        return any(
            conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")').fetchone()[0]
            for table in DATA_TABLES
            if table in tables
        )
    finally:
        conn.close()


def _extract(upload: Path, into: Path) -> None:
    """Regular files under db/ and artifacts/ only: no links, no absolute paths, no '..'; and the trailer,
    last, whose counts must match (a cut-off upload is refused)."""
    files, size, trailer = 0, 0, None
    with tarfile.open(upload, mode="r:") as tar:
        for member in tar:
            name = member.name
            if trailer is not None:
                raise TransferError(400, "UPLOAD_REJECTED", f"The upload has an entry after its trailer: {name[:120]}")
            if name == TRAILER and member.isfile():
                trailer = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                continue
            if (
                not member.isfile()
                or name.startswith("/")
                or ".." in name.split("/")
                or not (name == "db/mlflow.db" or name.startswith("artifacts/"))
            ):
                raise TransferError(
                    400, "UPLOAD_REJECTED", f"The upload holds an entry this endpoint does not accept: {name[:120]}"
                )
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:  # type: ignore[union-attr]
                shutil.copyfileobj(source, out, CHUNK)
            files, size = files + 1, size + member.size
    if trailer != {"files": files, "bytes": size}:
        raise TransferError(
            400,
            "UPLOAD_INCOMPLETE",
            f"The upload is incomplete: it holds {files} files ({size} bytes), its trailer says {trailer}.",
        )
    if not (into / "db" / "mlflow.db").is_file():
        raise TransferError(400, "UPLOAD_REJECTED", "The upload has no db/mlflow.db.")


def restore_upload(storage: StorageConfig, upload: Path, force: bool, keep_revision: bool = False) -> dict:
    from .migrations import create_engine, ensure_schema, expected_head, inspect_schema

    db, artifacts, data_dir = _local(storage)
    if has_data(db, artifacts) and not force:
        raise TransferError(
            409,
            "TARGET_NOT_EMPTY",
            "This deployment already holds MLflow data; restore with --force (mlflowctl takes a safety backup first).",
        )
    lock = open(data_dir / RESTORE_LOCK, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise TransferError(409, "RESTORE_RUNNING", "Another restore into this deployment is running.") from None
    work = data_dir / f".mlflowctl-restore-{time.time_ns()}"
    work.mkdir(mode=0o700)
    flag = data_dir / MAINTENANCE_FLAG
    keep_work = False
    try:
        _extract(upload, work)
        staged = work / "db" / "mlflow.db"
        check = sqlite3.connect(str(staged))
        try:
            verdict = check.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            check.close()
        if verdict != "ok":
            raise TransferError(400, "UPLOAD_REJECTED", f"The uploaded database fails SQLite's check: {verdict}")
        # This MLflow's head, with the same refusals as at startup (a DB ahead of the code, unknown revisions).
        (work / "state").mkdir()
        staged_storage = dataclasses.replace(
            storage, backend_store_uri=f"sqlite:///{staged}", sqlite_path=staged, state_dir=work / "state"
        )
        try:
            if keep_revision:
                engine = create_engine(staged_storage.backend_store_uri)
                try:
                    state = inspect_schema(engine)
                finally:
                    engine.dispose()
                if state.kind not in ("behind", "current"):
                    raise TransferError(
                        409,
                        "UPLOAD_SCHEMA_REFUSED",
                        f"A held restore needs data on this MLflow's chain; the upload is {state.kind} ({state.revision}).",
                    )
            else:
                state = ensure_schema(staged_storage, True)
        except TransferError:
            raise
        except Exception as exc:  # StartupError and friends: the data stays as it was
            raise TransferError(409, "UPLOAD_SCHEMA_REFUSED", str(exc)) from None
        flag.write_text(str(os.getpid()))
        time.sleep(0.5)  # let requests already past the maintenance check finish
        previous_db = work / "previous.db"
        if db.exists():
            _sqlite_copy(db, previous_db)
        previous_artifacts = work / "previous-artifacts"
        moved_artifacts = False
        try:
            _sqlite_copy(staged, db)
            if artifacts.exists():
                artifacts.rename(previous_artifacts)
                moved_artifacts = True
            staged_artifacts = work / "artifacts"
            if staged_artifacts.exists():
                staged_artifacts.rename(artifacts)
            else:
                artifacts.mkdir(parents=True, exist_ok=True)
        except Exception:
            keep_work = True  # until the old data is back in place, this directory holds the only copy
            if previous_db.exists():
                _sqlite_copy(previous_db, db)
            if moved_artifacts:
                if artifacts.exists():
                    shutil.rmtree(artifacts)
                previous_artifacts.rename(artifacts)
            keep_work = False
            raise
        if keep_revision and state.kind == "behind":
            # Written before the maintenance flag goes: no request of this bundle meets the older schema.
            (data_dir / HOLD_FILE).write_text(json.dumps({"head": expected_head(), "revision": state.revision}))
        files = sum(len(names) for _, _, names in os.walk(artifacts))
        log_event(
            "ops.restore",
            "restored an uploaded backup",
            revision=state.revision,
            artifacts=files,
            held=keep_revision and state.kind == "behind",
        )
        return {
            "restored": True,
            "revision": state.revision,
            "artifactFiles": files,
            "held": keep_revision and state.kind == "behind",
        }
    finally:
        flag.unlink(missing_ok=True)
        if keep_work:
            log_event(
                "ops.restore_rollback_failed",
                "putting the previous data back failed; it is kept here",
                logging.ERROR,
                path=str(work),
            )
        else:
            shutil.rmtree(work, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def recover(storage: StorageConfig) -> None:
    """At startup: a maintenance flag whose process is gone (a restore killed mid-way) is removed, and so are
    leftover upload spools and snapshot copies of dead processes. Restore work directories are kept (they may
    hold the only copy of the previous data) and named in the log."""
    if storage.mode != "local" or storage.data_dir is None or not storage.data_dir.is_dir():
        return
    hold = storage.data_dir / HOLD_FILE
    if hold.exists():
        from .migrations import expected_head

        if _held_head(storage) == expected_head():
            from .settings import StartupError

            raise StartupError(
                f"The data was restored to an older schema for the bundle that matches it ({HOLD_FILE}); this bundle would migrate it again. Activate the previous bundle, or delete {hold} to upgrade anew."
            )
        hold.unlink(missing_ok=True)
        log_event(
            "ops.hold_cleared", "a held restore is taken over by the bundle that matches its data", logging.WARNING
        )
    flag = storage.data_dir / MAINTENANCE_FLAG
    if flag.exists():
        try:
            pid = int(flag.read_text().strip() or "0")
        except ValueError:
            pid = 0
        if not _alive(pid):
            flag.unlink(missing_ok=True)
            log_event(
                "ops.maintenance_cleared",
                "removed the maintenance flag of a restore that did not finish",
                logging.WARNING,
                pid=pid,
            )
    for leftover in storage.data_dir.glob(".mlflowctl-*"):
        match = re.match(r"\.mlflowctl-(?:upload|snapshot)-(\d+)-", leftover.name)
        if match and not _alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)
        elif leftover.name.startswith(".mlflowctl-restore-") and leftover.is_dir():
            log_event(
                "ops.restore_leftover",
                "a restore work directory from an interrupted restore is left for inspection",
                logging.WARNING,
                path=str(leftover),
            )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
