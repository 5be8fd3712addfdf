"""Outer WSGI and ASGI wrappers around MLflow's app.

They do two things, identically for both interfaces: answer /_mlflowctl/ (ops.py), and strip a
/content/<guid>[/_bundle<id>] prefix if the proxy forwarded the full path. Whether Connect strips that
prefix itself is UNCONFIRMED (connect-api.md §8.3), so the extension handles both: MLflow's REST routes
only work at the root (mlflow.md B1), and its UI uses relative URLs, so stripping is always safe.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from .ops import OpsContext, handle_ops, is_ops_path

CONTENT_PREFIX = re.compile(r"^/content/[0-9A-Fa-f-]{36}(?:/_bundle\d+)?(?=/|$)")


def split_prefix(path: str) -> tuple[str, str]:
    """Returns (prefix, rest) where rest always starts with '/'."""
    match = CONTENT_PREFIX.match(path)
    if not match:
        return "", path or "/"
    return match.group(0), path[match.end():] or "/"


class WsgiExtension:
    def __init__(self, app: Callable[..., Any], ops: OpsContext) -> None:
        self.app = app
        self.ops = ops

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        prefix, path = split_prefix(environ.get("PATH_INFO", "/"))
        if prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path
        if is_ops_path(path):
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            status, body = handle_ops(self.ops, environ.get("REQUEST_METHOD", "GET"), path, headers)
            start_response(f"{status} {'OK' if status == 200 else 'Error'}", [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
            return [body]
        return self.app(environ, start_response)


class AsgiExtension:
    def __init__(self, app: Callable[..., Any], ops: OpsContext) -> None:
        self.app = app
        self.ops = ops

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        prefix, path = split_prefix(scope.get("path", "/"))
        if prefix:
            # root_path is left alone: Starlette's routing and MLflow's WSGI bridge would prepend it again.
            scope = dict(scope, path=path, raw_path=path.encode())
        if scope["type"] == "http" and is_ops_path(path):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            status, body = handle_ops(self.ops, scope.get("method", "GET"), path, headers)
            await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
