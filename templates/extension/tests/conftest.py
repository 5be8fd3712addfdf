"""Shared fixtures: a copy of the extension per test, real MLflow from the venv running pytest, and
PostgreSQL from MLFLOWCTL_TEST_PG_URL. A missing service skips locally and fails under CI=true."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit, urlunsplit
from urllib.request import Request, urlopen

import pytest

EXTENSION = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(EXTENSION))
IN_CI = bool(os.environ.get("CI"))


def require(available: bool, reason: str) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"required service missing under CI: {reason}")
    pytest.skip(reason)


def mlflow_version() -> tuple[int, ...]:
    import mlflow
    from packaging.version import Version

    return Version(mlflow.__version__).release


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "needs_mlflow(version): the test is about a migration or feature of that MLflow release and later"
    )
    config.addinivalue_line(
        "markers",
        "newest_mlflow_only: a test of behaviour that does not change with MLflow's version (the replica's files,"
        " SQLite's WAL, process kills, the ops endpoint's gate, refusals before MLflow starts); a run over several"
        " venvs gives it to the newest only",
    )


# Set by the test runner for every venv but the newest, so that the version-independent tests run once a run.
OLDER_VENV = os.environ.get("MLFLOWCTL_TEST_OLDER_VENV") == "1"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests about a newer MLflow's behaviour do not apply to an older venv, and the long version-independent ones run
    in the newest venv only: they are deselected, with the reason printed (not skipped: under CI a skip is a failure,
    and nothing is missing here)."""
    version = ".".join(map(str, mlflow_version()))
    keep, drop, reasons = [], [], []
    for item in items:
        needs = item.get_closest_marker("needs_mlflow")
        if needs and mlflow_version() < needs.args[0]:
            reason = f"not for MLflow {version} (needs {'.'.join(map(str, needs.args[0]))})"
        elif OLDER_VENV and item.get_closest_marker("newest_mlflow_only"):
            reason = f"runs in the newest MLflow's venv only (this is {version})"
        else:
            keep.append(item)
            continue
        drop.append(item)
        reasons.append(f"deselected {item.nodeid}: {reason}")
    # The terminal reporter writes past pytest's capture, which would swallow a print made during collection.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    for line in reasons:
        write(line)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A copy of the extension as Connect would unpack it (no tests, no mlflowctl.json)."""
    target = tmp_path / "bundle"
    shutil.copytree(EXTENSION, target, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.tmpl"))
    return target


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def import_app(bundle: Path, env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """Starts the extension the way Connect does (it imports app.py), waits for its start-up steps and returns the
    outcome: exit 0 once it is ready, 1 when it refused."""
    script = f"import sys, app; sys.exit(0 if app.app.startup.wait({timeout - 10}) else 1)"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=bundle, env=env, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return http("GET", self.url(path), headers=headers)

    def mlflow_post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """POSTs `body` as JSON to MLflow's REST API (`path` after /api/2.0/mlflow/)."""
        return http(
            "POST", self.url(f"/api/2.0/mlflow/{path}"), json.dumps(body).encode(), {"Content-Type": "application/json"}
        )

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    import urllib.error

    request = Request(url, data=body, method=method, headers=headers or {})
    try:
        with urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def server_command(port: int, wsgi: bool = False) -> list[str]:
    """How Connect-like hosts serve the bundle: uvicorn for the ASGI app (MLflow 3.3+), else a threaded WSGI host
    (20 requests at once, as the hosts in dev up and the fake Connect run python-api content)."""
    if mlflow_version() >= (3, 3) and not wsgi:
        return [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "20",
        "--timeout",
        "300",
        "app:app",
    ]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(bundle: Path, env: dict[str, str], wsgi: bool = False) -> Server:
        """wsgi: serve with gunicorn whatever the MLflow version, as Connect serves python-api content."""
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        cmd = server_command(port, wsgi)
        with open(log, "wb") as handle:
            process = subprocess.Popen(cmd, cwd=bundle, env=env, stdout=handle, stderr=subprocess.STDOUT)
        server = Server(port, process, log)
        servers.append(server)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.logs()[-3000:]}")
            try:
                if server.get("/health")[0] == 200:
                    return server
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server did not become healthy:\n{server.logs()[-3000:]}")

    yield start
    for server in servers:  # all at once: each takes a moment to stop
        server.process.terminate()
    for server in servers:
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (psycopg2 comes with the bundle's requirements)."""
    base = os.environ.get("MLFLOWCTL_TEST_PG_URL")
    require(bool(base), "MLFLOWCTL_TEST_PG_URL is not set; start PostgreSQL (bash .ci/run does) and export it")
    try:  # the bundle ships psycopg 3 with MLflow 3.x and psycopg2 with 2.x
        import psycopg as driver
    except ImportError:
        import psycopg2 as driver

    name = f"ext_{uuid.uuid4().hex[:10]}"
    admin = driver.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


API_KEY = "content-api-key-0123456789"
SESSION = "session-token-abcdef012345"


class FakeExchange:
    """A token endpoint that records requests and answers with a scripted (status, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # (status, body), or a function returning one per request.
        self.answer: Any = (200, {"access_token": "t-1", "issued_token_type": "x", "token_type": "Bearer"})
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                owner.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("authorization"),
                        "type": self.headers.get("content-type"),
                        "form": parse_qs(body),
                    }
                )
                status, payload = owner.answer() if callable(owner.answer) else owner.answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # shutdown() waits for the loop's next poll: half a second by default, at every test's teardown.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CONNECT_SERVER": self.url,
            "CONNECT_API_KEY": API_KEY,
            "CONNECT_CONTENT_SESSION_TOKEN": SESSION,
            **extra,
        }


@pytest.fixture
def exchange_server():
    server = FakeExchange()
    yield server
    server.server.shutdown()
