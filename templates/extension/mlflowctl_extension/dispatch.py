"""Which of MLflow's two apps answers a request, on MLflow 3.3+ where both exist in one process.

MLflow's FastAPI app serves a few routes of its own (artifact streaming, OTLP ingestion, jobs, gateway, server info)
and mounts the Flask app, which serves everything else (the whole REST API), at "/". Every Flask request then
crosses FastAPI's middleware stack (host validation, CORS, security headers, the workspace and gateway-timing
middlewares, each an asyncio task hop) and its router before it reaches a worker thread. Under python-api it is
worse: the WSGI host hands the request to a2wsgi's event loop, which hands it to a worker thread again. That
overhead is most of the CPU a request costs, and one process has one interpreter lock.

The Flask app does the same checks itself (MLflow installs host validation, CORS and security headers on it when it
runs as a server, and its workspace handlers before each request), so a request for a Flask route goes to Flask by
the shortest path, and only the FastAPI app's own routes take the FastAPI path.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable


class NativeRoutes:
    """The FastAPI app's own routes: everything but the mount that carries the Flask app."""

    def __init__(self, asgi_app: Any) -> None:
        from starlette.routing import Match, Mount

        # Looked up once: claims() runs on every request.
        self._full = Match.FULL
        self._routes = [route for route in asgi_app.routes if not isinstance(route, Mount)]
        mounts = [route for route in asgi_app.routes if isinstance(route, Mount) and route.path in ("", "/")]
        # The ASGI face of the Flask app (MLflow's WSGI bridge), as the router would reach it.
        self.flask_bridge: Any = mounts[-1].app if mounts else None

    def claims(self, method: str, path: str, root_path: str = "") -> bool:
        """True when a route of the FastAPI app itself answers this request. A route that matches the path but not
        the method does not claim it: the router passes such a request on to the mount as well."""
        scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
        return any(route.matches(scope)[0] == self._full for route in self._routes)


class BoundedWsgi:
    """At most `handlers` requests inside the app at once (the bound MLflow's FastAPI app gets on its worker threads,
    concurrency.py); the host's other threads wait their turn in arrival order."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        handlers: int,
        waited: Callable[[float], None] | None = None,
    ) -> None:
        self._app = app
        self._handlers = handlers
        self._turns = threading.BoundedSemaphore(handlers)
        self._waited = waited
        self._count = threading.Lock()
        self._busy = 0
        self._waiting = 0

    def slots(self) -> tuple[int, int, int]:
        """(slots, busy, waiting), for the metrics."""
        return self._handlers, self._busy, self._waiting

    def _add(self, busy: int = 0, waiting: int = 0) -> None:
        with self._count:
            self._busy += busy
            self._waiting += waiting

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._turns.acquire(blocking=False):
            began = time.monotonic()
            self._add(waiting=1)
            try:
                self._turns.acquire()
            finally:
                self._add(waiting=-1)
            if self._waited is not None:
                self._waited(time.monotonic() - began)
        self._add(busy=1)
        try:
            return self._app(environ, start_response)
        finally:
            self._add(busy=-1)
            self._turns.release()


class FlaskFirstWsgi:
    """python-api: a request for a Flask route goes to the Flask app on the host's own thread; the FastAPI app's
    routes go through the ASGI bridge (which bounds its handlers itself)."""

    def __init__(
        self,
        flask_app: Callable[..., Iterable[bytes]],
        asgi_bridge: Callable[..., Iterable[bytes]],
        routes: NativeRoutes,
    ) -> None:
        self._flask = flask_app
        self._bridge = asgi_bridge
        self._routes = routes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._routes.claims(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")):
            return self._bridge(environ, start_response)
        return self._flask(environ, start_response)


class FlaskFirstAsgi:
    """python-fastapi: a request for a Flask route goes straight to MLflow's WSGI bridge (the app its router would
    reach); the FastAPI app's routes, and every non-HTTP scope, go to the FastAPI app."""

    def __init__(self, asgi_app: Any, routes: NativeRoutes) -> None:
        self._app = asgi_app
        self._routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        bridge = self._routes.flask_bridge
        if (
            scope["type"] != "http"
            or bridge is None
            or self._routes.claims(scope["method"], scope["path"], scope.get("root_path", ""))
        ):
            await self._app(scope, receive, send)
            return
        await bridge(scope, receive, send)
