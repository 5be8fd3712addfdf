"""The authenticated ops endpoint: GET /_mlflowctl/status returns the extension's state as JSON.

Connect authenticates the caller first; on top of that the caller must present MLFLOWCTL_OPS_TOKEN in the
X-Mlflowctl-Ops-Token header, compared in constant time, so that a viewer of the content cannot read it.
"""
from __future__ import annotations

import hmac
import json
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

OPS_PREFIX = "/_mlflowctl/"
TOKEN_HEADER = "x-mlflowctl-ops-token"
STATUS_FORMAT_VERSION = 1


@dataclass
class OpsContext:
    ops_token: str | None
    describe: Callable[[], dict[str, Any]]


def is_ops_path(path: str) -> bool:
    return path.startswith(OPS_PREFIX) or path == OPS_PREFIX.rstrip("/")


def handle_ops(ctx: OpsContext, method: str, path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
    """Answers a request under /_mlflowctl/ with (HTTP status, JSON body). Never raises."""
    if not ctx.ops_token:
        return _json(503, {"error": "OPS_TOKEN_NOT_CONFIGURED", "message": "Set MLFLOWCTL_OPS_TOKEN on the content to enable the ops endpoint."})
    presented = headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(presented.encode(), ctx.ops_token.encode()):
        return _json(401, {"error": "OPS_TOKEN_INVALID", "message": f"Missing or wrong {TOKEN_HEADER} header."})
    if path.rstrip("/") != "/_mlflowctl/status":
        return _json(404, {"error": "NOT_FOUND", "message": f"No ops endpoint at {path}."})
    if method not in ("GET", "HEAD"):
        return _json(405, {"error": "METHOD_NOT_ALLOWED", "message": "Use GET."})
    try:
        return _json(200, ctx.describe())
    except Exception as exc:  # the status endpoint must answer even when the DB is down
        return _json(500, {"error": "STATUS_FAILED", "message": type(exc).__name__})


def _json(status: int, payload: dict[str, Any]) -> tuple[int, bytes]:
    return status, json.dumps(payload).encode()


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
