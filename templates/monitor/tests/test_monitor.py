"""The monitor's checks against a small model of Connect and the extension (content API, /health, the ops status),
served over real HTTP: what each state of a deployment yields, the growth between runs, and the page."""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlflowctl_monitor as monitor  # noqa: E402

KEY = "report-owner-key-0123456789"
TOKEN = "ops-token-abcdef0123456789"
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=timezone.utc).timestamp()


def status(**changes: Any) -> dict[str, Any]:
    base = {
        "schemaState": "current",
        "dbRevision": "dc11669786a5",
        "expectedHead": "dc11669786a5",
        "storageMode": "local",
        "lastSnapshot": {"at": (datetime.fromtimestamp(NOW, timezone.utc) - timedelta(hours=2)).isoformat()},
        "dataDirFreeBytes": 50,
        "dataDirTotalBytes": 100,
        "databaseBytes": 1000,
        "artifactBytes": 1000,
        "replica": None,
    }
    return {**base, **changes}


class Model:
    """GUID -> (content JSON or None, /health status, ops status JSON)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[dict[str, Any] | str | None, int, dict[str, Any]]] = {}
        self.seen_keys: list[str] = []


@pytest.fixture
def connect() -> Iterator[tuple[str, Model]]:
    model = Model()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, code: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            model.seen_keys.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != f"Key {KEY}":
                return self.answer(401, {"code": 30, "error": "Invalid login."})
            parts = self.path.strip("/").split("/")
            if parts[:3] == ["__api__", "v1", "content"]:
                content = model.items.get(parts[3], (None, 0, {}))[0]
                if isinstance(content, str):  # what a proxy's login page would answer
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    return self.wfile.write(content.encode())
                return self.answer(200, content) if content else self.answer(404, {"code": 4, "error": "Not found."})
            guid = parts[1]
            content, health, ops = model.items[guid]
            if parts[2:] == ["health"]:
                body = (
                    {"status": "ok"} if health == 200 else {"error": {"code": "REFUSED", "message": "refused to start"}}
                )
                return self.answer(health, body)
            if parts[2:] == ["_mlflowctl", "status"]:
                if self.headers.get("X-Mlflowctl-Ops-Token") != TOKEN:
                    return self.answer(401, {"error": "OPS_TOKEN_INVALID", "message": "Missing or wrong token."})
                return self.answer(200, ops)
            return self.answer(404, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield url, model
    finally:
        server.shutdown()
        server.server_close()


def add(model: Model, url: str, guid: str, health: int = 200, **ops: Any) -> None:
    content = {"guid": guid, "name": f"mlflow-{guid}", "title": None, "content_url": f"{url}content/{guid}/"}
    model.items[guid] = (content, health, status(**ops))


def env(url: str, targets: list[str], data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    values = {
        "CONNECT_SERVER": url,
        "CONNECT_API_KEY": KEY,
        "MLFLOWCTL_MONITOR_TARGETS": ",".join(targets),
        "MLFLOWCTL_MONITOR_OPS_TOKENS": json.dumps({guid: TOKEN for guid in targets if guid != "no-token"}),
        **extra,
    }
    if data_dir:
        values["CONNECT_CONTENT_DATA_DIR"] = str(data_dir)
    return values


def checks(report: monitor.Report, guid: str) -> dict[str, str]:
    deployment = next(d for d in report.deployments if d.guid == guid)
    return {check.name: check.status for check in deployment.checks}


def test_each_state_fails_the_check_it_should(connect, tmp_path):
    url, model = connect
    add(model, url, "healthy")
    add(model, url, "behind", health=503, schemaState="behind", dbRevision="75868b020152")
    add(model, url, "old-backup", lastSnapshot={"at": "2026-12-01T00:00:00+00:00"})
    add(model, url, "never-backed-up", lastSnapshot=None)
    add(model, url, "lagging", replica={"lagSeconds": 900.0, "lastError": None})
    add(model, url, "full", dataDirFreeBytes=5)
    add(model, url, "no-token")
    targets = [*model.items, "gone"]
    report = monitor.run(env(url, targets, tmp_path), now=NOW)
    assert checks(report, "healthy") == {
        "health": "pass",
        "schema": "pass",
        "backup": "pass",
        "free space": "pass",
        "growth": "pass",
    }
    assert checks(report, "behind")["health"] == "fail" and checks(report, "behind")["schema"] == "fail"
    behind = next(d for d in report.deployments if d.guid == "behind")
    assert "refused to start" in behind.checks[0].detail
    assert checks(report, "old-backup")["backup"] == "fail"
    assert checks(report, "never-backed-up")["backup"] == "fail"
    assert checks(report, "lagging")["replica"] == "fail"
    assert checks(report, "full")["free space"] == "fail"
    assert checks(report, "no-token") == {"health": "pass", "status": "skip"}
    assert checks(report, "gone") == {"content": "fail"}
    assert report.failing == 6 and monitor.subject(report) == "MLflow deployments: 6 failing"
    # The key goes to Connect only as the Authorization header; the page shows neither it nor the ops token.
    page = monitor.render_html(report)
    assert KEY not in page and TOKEN not in page
    assert "2 healthy, 6 failing" in page


def test_growth_is_measured_between_runs(connect, tmp_path):
    url, model = connect
    add(model, url, "growing")
    first = monitor.run(env(url, ["growing"], tmp_path), now=NOW)
    assert checks(first, "growing")["growth"] == "pass"
    add(model, url, "growing", databaseBytes=3000, artifactBytes=1000)
    second = monitor.run(env(url, ["growing"], tmp_path, MLFLOWCTL_MONITOR_MAX_GROWTH_PERCENT="50"), now=NOW)
    growth = next(c for c in second.deployments[0].checks if c.name == "growth")
    assert growth.status == "fail" and "+100%" in growth.detail
    assert monitor.subject(second) == "MLflow deployments: 1 failing"


def test_a_missing_setting_is_a_failure_the_page_names(tmp_path):
    report = monitor.run({"CONNECT_SERVER": "http://127.0.0.1:1/", "CONNECT_API_KEY": KEY}, now=NOW)
    assert report.failing == 1 and "MLFLOWCTL_MONITOR_TARGETS" in report.problems[0]
    assert "MLFLOWCTL_MONITOR_TARGETS" in monitor.render_html(report)


def test_an_answer_that_is_not_json_fails_that_deployment_only(connect, tmp_path):
    url, model = connect
    add(model, url, "fine")
    model.items["behind-a-proxy"] = ("<html>Sign in</html>", 200, {})  # type: ignore[assignment]
    report = monitor.run(env(url, ["fine", "behind-a-proxy"], tmp_path), now=NOW)
    assert checks(report, "fine")["health"] == "pass"
    assert checks(report, "behind-a-proxy") == {"answer": "fail"}
    assert report.failing == 1


def test_names_on_the_page_are_escaped(connect, tmp_path):
    url, model = connect
    add(model, url, "x")
    model.items["x"][0]["title"] = "<script>alert(1)</script>"  # type: ignore[index]
    page = monitor.render_html(monitor.run(env(url, ["x"]), now=NOW))
    assert "<script>" not in page and "&lt;script&gt;" in page
