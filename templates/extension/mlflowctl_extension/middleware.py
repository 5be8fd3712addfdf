"""Outer WSGI and ASGI wrappers around MLflow's app.

They do four things, identically for both interfaces: answer /_mlflowctl/ (ops.py), answer 503 to everything
else while the extension starts or migrates (startup.py; `app` is None until then) and while a restore swaps the
data in (transfer.py), and strip a
/content/<guid>[/_bundle<id>] prefix if the proxy forwarded the full path. Whether Connect strips that
prefix itself is UNCONFIRMED, so the extension handles both: MLflow's REST routes
only work at the root, and its UI uses relative URLs, so stripping is always safe.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .ops import (
    OpsContext,
    authorize,
    handle_ops,
    in_maintenance,
    is_ops_path,
    maintenance_response,
    upload_dir,
    upload_incomplete,
    wants_upload,
)
from .traffic import CountedBody

CONTENT_PREFIX = re.compile(r"^/content/[0-9A-Fa-f-]{36}(?:/_bundle\d+)?(?=/|$)")
# An upload through MLflow's artifact proxy (`mlflow server --serve-artifacts`): PUT <route>/<path under the root>.
ARTIFACT_UPLOAD = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/(.+)$")
# How much of a refused request's body is read and dropped before the refusal is sent. A host closes the connection
# on a body left unread, and a client still sending then sees a broken pipe instead of the 401 that says why. A body
# larger than this is cut off: the refusal costs the server no more than this much reading.
REFUSED_BODY_DRAIN = 256 << 20


def uploaded_artifact(method: str, path: str) -> str | None:
    """The artifact path a request uploads, or None."""
    match = ARTIFACT_UPLOAD.match(path) if method == "PUT" else None
    return match.group(1) if match else None


def split_prefix(path: str) -> tuple[str, str]:
    """Returns (prefix, rest) where rest always starts with '/'."""
    match = CONTENT_PREFIX.match(path)
    if not match:
        return "", path or "/"
    return match.group(0), path[match.end() :] or "/"


def _spool_name(ctx: OpsContext) -> Path:
    base = upload_dir(ctx) or Path(tempfile.gettempdir())
    return base / f".mlflowctl-upload-{os.getpid()}-{time.time_ns()}.tar"


def _drain_wsgi_body(environ: dict[str, Any]) -> None:
    remaining = min(int(environ.get("CONTENT_LENGTH") or 0), REFUSED_BODY_DRAIN)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(1 << 20, remaining))
        if not chunk:
            return
        remaining -= len(chunk)


async def _drain_asgi_body(receive: Callable[..., Any]) -> None:
    drained = 0
    while drained <= REFUSED_BODY_DRAIN:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


def _status_line(status: int) -> str:
    return f"{status} {'OK' if status == 200 else 'Error'}"


def _ready(app: Any, ops: OpsContext) -> bool:
    return app is not None and (ops.startup is None or ops.startup.state == "ready")


class WsgiExtension:
    def __init__(self, app: Callable[..., Any] | None, ops: OpsContext) -> None:
        self.app = app
        self.ops = ops
        self.startup = ops.startup

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        began = time.monotonic()
        prefix, path = split_prefix(environ.get("PATH_INFO", "/"))
        if prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path
        if is_ops_path(path):
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            method = environ.get("REQUEST_METHOD", "GET")
            response = authorize(self.ops, headers)
            if response is None and wants_upload(method, path):
                spool = _spool_name(self.ops)
                try:
                    with open(spool, "wb") as out:
                        remaining = int(environ.get("CONTENT_LENGTH") or 0)
                        stream = environ["wsgi.input"]
                        while remaining > 0:
                            chunk = stream.read(min(1 << 20, remaining))
                            if not chunk:
                                break
                            out.write(chunk)
                            remaining -= len(chunk)
                    # A body shorter than its Content-Length is a cut-off upload: never restored.
                    response = (
                        handle_ops(self.ops, method, path, headers, spool) if remaining == 0 else upload_incomplete()
                    )
                finally:
                    spool.unlink(missing_ok=True)
            elif response is None:
                response = handle_ops(self.ops, method, path, headers)
            else:
                _drain_wsgi_body(environ)
            extra = [("Content-Length", str(len(response.body)))] if isinstance(response.body, bytes) else []
            start_response(
                _status_line(response.status),
                [("Content-Type", response.content_type), ("Cache-Control", "no-store"), *extra],
            )
            return [response.body] if isinstance(response.body, bytes) else response.body
        if not _ready(self.app, self.ops):
            status, headers, body = self.ops.startup.unavailable(path)  # type: ignore[union-attr]
            start_response(_status_line(status), [*headers, ("Content-Length", str(len(body)))])
            self.ops.metrics.observe(path, status, time.monotonic() - began)
            return [body]
        assert self.app is not None
        if in_maintenance(self.ops):
            response = maintenance_response()
            start_response(_status_line(response.status), [("Content-Type", "application/json"), ("Retry-After", "30")])
            self.ops.metrics.observe(path, response.status, time.monotonic() - began)
            return [response.body]
        # PATH_INFO is the request's bytes as latin-1 (PEP 3333): the artifact's name is their UTF-8.
        artifact = uploaded_artifact(
            environ.get("REQUEST_METHOD", "GET"), path.encode("latin-1").decode("utf-8", "replace")
        )
        if artifact and self.ops.artifact_written:
            notify = self.ops.artifact_written

            def answered(status: str, headers: Any, *rest: Any) -> Any:
                if status.startswith("2"):
                    notify(artifact)
                return start_response(status, headers, *rest)

            return self._counted(environ, answered, path, began)
        return self._counted(environ, start_response, path, began)

    def _counted(self, environ: dict[str, Any], start_response: Callable[..., Any], path: str, began: float) -> Any:
        """Calls MLflow's app. The request is counted as its status is sent, before a client can read the answer;
        it stays in flight, and its duration runs, until the host closes its body (a stream included)."""
        assert self.app is not None
        traffic, metrics = self.ops.traffic, self.ops.metrics
        answered = [0]

        def recording(status: str, headers: Any, *rest: Any) -> Any:
            answered[0] = int(status.split(" ", 1)[0])
            metrics.count(path, answered[0])
            return start_response(status, headers, *rest)

        def done() -> None:
            traffic.leave()
            if not answered[0]:
                answered[0] = 500
                metrics.count(path, 500)
            metrics.time(path, answered[0], time.monotonic() - began)

        traffic.enter()
        try:
            body = self.app(environ, recording)
        except BaseException:
            done()
            raise
        return CountedBody(body, done)


class AsgiExtension:
    def __init__(self, app: Callable[..., Any] | None, ops: OpsContext) -> None:
        self.app = app
        self.ops = ops
        self.startup = ops.startup
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None
        self._loop_lock = threading.Lock()

    def when_host_loop(self, callback: Callable[[asyncio.AbstractEventLoop], None]) -> None:
        """Calls `callback(loop)` with the host's event loop: now when its lifespan startup reached us already,
        else (on a worker thread) when it does. A host that sends no lifespan never calls it."""
        with self._loop_lock:
            loop = self._loop
            if loop is None:
                self._on_loop = callback
                return
        callback(loop)

    async def _lifespan(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        """Our own lifespan: the host starts serving at once. MLflow's app runs its lifespan startup on this loop
        once it is loaded (server.py)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loop = asyncio.get_running_loop()
                with self._loop_lock:
                    self._loop, pending, self._on_loop = loop, self._on_loop, None
                if pending is not None:
                    loop.run_in_executor(None, pending, loop)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        began = time.monotonic()
        if scope["type"] not in ("http", "websocket"):
            if self.app is not None:
                await self.app(scope, receive, send)
            return
        prefix, path = split_prefix(scope.get("path", "/"))
        if prefix:
            # root_path is left alone: Starlette's routing and MLflow's WSGI bridge would prepend it again.
            scope = dict(scope, path=path, raw_path=path.encode())
        if scope["type"] == "http" and is_ops_path(path):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            method = scope.get("method", "GET")
            loop = asyncio.get_running_loop()
            response = authorize(self.ops, headers)
            if response is None and wants_upload(method, path):
                spool = _spool_name(self.ops)
                try:
                    complete = False
                    with open(spool, "wb") as out:
                        while True:
                            message = await receive()
                            if message["type"] == "http.disconnect":
                                break  # the client went away mid-upload: nothing is restored
                            out.write(message.get("body", b""))
                            if not message.get("more_body", False):
                                complete = True
                                break
                    if not complete:
                        return
                    # Blocking work (extract, migrate, swap) off the event loop.
                    response = await loop.run_in_executor(None, handle_ops, self.ops, method, path, headers, spool)
                finally:
                    spool.unlink(missing_ok=True)
            elif response is None:
                response = await loop.run_in_executor(None, handle_ops, self.ops, method, path, headers)
            else:
                await _drain_asgi_body(receive)
            head = [(b"content-type", response.content_type.encode()), (b"cache-control", b"no-store")]
            if isinstance(response.body, bytes):
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": [*head, (b"content-length", str(len(response.body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": response.body})
                return
            await send({"type": "http.response.start", "status": response.status, "headers": head})
            chunks = iter(response.body)
            while True:
                chunk = await loop.run_in_executor(None, next, chunks, None)
                if chunk is None:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if not _ready(self.app, self.ops):
            if scope["type"] != "http":
                await send({"type": "websocket.close", "code": 1013})  # try again later
                return
            status, headers, body = self.ops.startup.unavailable(path)  # type: ignore[union-attr]
            raw = [(name.lower().encode(), value.encode()) for name, value in headers]
            self.ops.metrics.observe(path, status, time.monotonic() - began)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*raw, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        assert self.app is not None
        if scope["type"] == "http" and in_maintenance(self.ops):
            response = maintenance_response()
            self.ops.metrics.observe(path, 503, time.monotonic() - began)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"30")],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        artifact = uploaded_artifact(scope.get("method", ""), path) if scope["type"] == "http" else None
        if artifact and self.ops.artifact_written:
            notify, inner = self.ops.artifact_written, send

            async def answered(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                    notify(artifact)
                await inner(message)

            send = answered
        answered_status = [0]
        inner_send = send
        metrics = self.ops.metrics

        async def recording(message: dict[str, Any]) -> None:
            # Counted as its status is sent, before a client can read the answer; timed once the app returns.
            if message["type"] == "http.response.start":
                answered_status[0] = message["status"]
                metrics.count(path, message["status"])
            await inner_send(message)

        self.ops.traffic.enter()
        try:
            await self.app(scope, receive, recording if scope["type"] == "http" else send)
        finally:
            self.ops.traffic.leave()
            if scope["type"] == "http":
                if not answered_status[0]:
                    answered_status[0] = 500
                    metrics.count(path, 500)
                metrics.time(path, answered_status[0], time.monotonic() - began)
