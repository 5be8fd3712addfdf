"""The authenticated ops endpoint: GET /_mlflowctl/status returns the extension's state as JSON, and
GET /_mlflowctl/metrics the same state and the request counts in Prometheus' text format (metrics.py);
POST /_mlflowctl/snapshot streams a consistent backup of local-storage data and POST /_mlflowctl/restore
swaps an uploaded one in (transfer.py); GET /_mlflowctl/storage reports where the bytes are and POST /_mlflowctl/gc
purges what is deleted, streaming its progress as JSON lines (storage_service.py).

Connect authenticates the caller first; on top of that the caller must present MLFLOWCTL_OPS_TOKEN in the
X-Mlflowctl-Ops-Token header, compared in constant time, so that a viewer of the content cannot read it.
"""

from __future__ import annotations

import hmac
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .metrics import CONTENT_TYPE, Metrics
from .traffic import Traffic

OPS_PREFIX = "/_mlflowctl/"
ROUTES = (
    "/_mlflowctl/status",
    "/_mlflowctl/metrics",
    "/_mlflowctl/snapshot",
    "/_mlflowctl/restore",
    "/_mlflowctl/storage",
    "/_mlflowctl/gc",
)
GC_OPTIONS_HEADER = "x-mlflowctl-gc"
TOKEN_HEADER = "x-mlflowctl-ops-token"
STATUS_FORMAT_VERSION = 1


@dataclass
class OpsContext:
    ops_token: str | None
    # None until the start-up steps are done (startup.py): the status then says what they are doing.
    describe: Callable[[], dict[str, Any]] | None
    storage: Any = None  # settings.StorageConfig; None in tests of the status alone
    # Told of each artifact MLflow's proxy wrote (its path under the artifact root), once the upload is answered.
    artifact_written: Callable[[str], None] | None = None
    startup: Any = None  # startup.Startup
    storage_service: Any = None  # storage_service.StorageService
    # The MLflow requests in flight in this process (middleware.py counts them; gc lets them go first).
    traffic: Traffic = field(default_factory=Traffic)
    # Prometheus metrics of this process (metrics.py): counted by the middleware, read at GET /_mlflowctl/metrics.
    metrics: Metrics = field(default_factory=Metrics)


@dataclass
class OpsResponse:
    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"


def is_ops_path(path: str) -> bool:
    return path.startswith(OPS_PREFIX) or path == OPS_PREFIX.rstrip("/")


def authorize(ctx: OpsContext, headers: Mapping[str, str]) -> OpsResponse | None:
    """None when the caller presented the ops token; else the refusal."""
    if not ctx.ops_token:
        return _json(
            503,
            {
                "error": "OPS_TOKEN_NOT_CONFIGURED",
                "message": "Set MLFLOWCTL_OPS_TOKEN on the content to enable the ops endpoint.",
            },
        )
    presented = headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(presented.encode(), ctx.ops_token.encode()):
        return _json(401, {"error": "OPS_TOKEN_INVALID", "message": f"Missing or wrong {TOKEN_HEADER} header."})
    return None


def wants_upload(method: str, path: str) -> bool:
    return method == "POST" and path.rstrip("/") == "/_mlflowctl/restore"


def maintenance_response() -> OpsResponse:
    return _json(503, {"error": "MAINTENANCE", "message": "A restore is in progress; try again in a minute."})


def upload_incomplete() -> OpsResponse:
    return _json(
        400,
        {"error": "UPLOAD_INCOMPLETE", "message": "The upload ended before its Content-Length: nothing was restored."},
    )


def in_maintenance(ctx: OpsContext) -> bool:
    from .transfer import maintenance_active

    return ctx.storage is not None and maintenance_active(ctx.storage)


def upload_dir(ctx: OpsContext) -> Path | None:
    return ctx.storage.data_dir if ctx.storage is not None else None


def handle_ops(
    ctx: OpsContext, method: str, path: str, headers: Mapping[str, str], upload: Path | None = None
) -> OpsResponse:
    """Answers a request under /_mlflowctl/. Never raises."""
    refused = authorize(ctx, headers)
    if refused:
        return refused
    route = path.rstrip("/")
    if route not in ROUTES:
        return _json(404, {"error": "NOT_FOUND", "message": f"No ops endpoint at {path}."})
    if route == "/_mlflowctl/metrics":
        # Answers while starting too: `mlflowctl_up 0` is what an alert on a stuck start needs.
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "METHOD_NOT_ALLOWED", "message": "Use GET."})
        return OpsResponse(200, ctx.metrics.render(), CONTENT_TYPE)
    if ctx.describe is None or (ctx.startup is not None and ctx.startup.state != "ready"):
        from .startup import describe_state

        view = (
            ctx.startup.view() if ctx.startup is not None else {"state": "starting", "migration": None, "error": None}
        )
        return _json(503, {"error": view["state"].upper(), "message": describe_state(view), "startup": view})
    if route == "/_mlflowctl/status":
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "METHOD_NOT_ALLOWED", "message": "Use GET."})
        try:
            return _json(200, ctx.describe())
        except Exception as exc:  # the status endpoint must answer even when the DB is down
            return _json(500, {"error": "STATUS_FAILED", "message": type(exc).__name__})
    if route == "/_mlflowctl/storage":
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "METHOD_NOT_ALLOWED", "message": "Use GET."})
        return _storage_call(lambda: _json(200, ctx.storage_service.report()))
    if method != "POST":
        return _json(405, {"error": "METHOD_NOT_ALLOWED", "message": "Use POST."})
    if route == "/_mlflowctl/gc":
        return _storage_call(lambda: _gc(ctx, headers))
    from .transfer import TransferError, restore_upload, snapshot_stream

    try:
        if route == "/_mlflowctl/snapshot":
            # Only a backup's snapshot is the "last backup" the status reports (not a scratch copy for a rehearsal).
            for_backup = headers.get("x-mlflowctl-snapshot-for", "") == "backup"
            return OpsResponse(200, snapshot_stream(ctx.storage, for_backup), "application/x-tar")
        if upload is None:
            return _json(400, {"error": "UPLOAD_REJECTED", "message": "POST the tar as the request body."})
        return _json(
            200,
            restore_upload(
                ctx.storage,
                upload,
                headers.get("x-mlflowctl-force", "") == "1",
                headers.get("x-mlflowctl-keep-revision", "") == "1",
            ),
        )
    except TransferError as exc:
        return _json(exc.status, {"error": exc.code, "message": str(exc)})
    except Exception as exc:
        from .logs import redact

        return _json(500, {"error": "TRANSFER_FAILED", "message": redact(f"{type(exc).__name__}: {exc}")})


def _storage_call(answer: Callable[[], OpsResponse]) -> OpsResponse:
    try:
        return answer()
    except Exception as exc:
        from .logs import redact

        return _json(500, {"error": "STORAGE_FAILED", "message": redact(f"{type(exc).__name__}: {exc}")})


def _gc(ctx: OpsContext, headers: Mapping[str, str]) -> OpsResponse:
    from .storage_gc import GcBusy, GcOptions

    try:
        options = GcOptions.from_json(json.loads(headers.get(GC_OPTIONS_HEADER) or "{}"))
    except (ValueError, TypeError, KeyError) as exc:
        return _json(400, {"error": "GC_OPTIONS_INVALID", "message": f"{GC_OPTIONS_HEADER}: {exc}"})
    try:
        run = ctx.storage_service.gc(options)
    except GcBusy as exc:
        return _json(409, {"error": "GC_RUNNING", "message": str(exc)})

    def lines() -> Iterator[bytes]:
        try:
            for event in run:
                yield (json.dumps(event) + "\n").encode()
        finally:
            run.close()

    return OpsResponse(200, lines(), "application/x-ndjson")


def _json(status: int, payload: dict[str, Any]) -> OpsResponse:
    return OpsResponse(status, json.dumps(payload).encode())


def disk_space(path: Any) -> tuple[int | None, int | None]:
    """(free, total) bytes of the file system holding `path`; (None, None) without a path or on error."""
    if path is None:
        return None, None
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None, None
    return usage.free, usage.total


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
