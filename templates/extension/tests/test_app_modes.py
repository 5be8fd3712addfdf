"""python-api content served by a WSGI server, as Connect serves it, with real MLflow. A deployed item keeps its
first app mode (Connect refuses a change, error 48), so content that started on MLflow 2.x stays python-api after
an upgrade to 3.3+: there the extension serves the FastAPI app through a2wsgi, so the FastAPI-only routes (OTLP
trace ingestion, server info) answer as they do under python-fastapi. Before 3.3 there is only the Flask app."""

from __future__ import annotations

import json
import time
from urllib.request import Request, urlopen

import pytest
from conftest import base_env, http, mlflow_version


def otlp_span(trace_id: bytes) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    now = time.time_ns()
    span = Span(
        trace_id=trace_id,
        span_id=b"\x01" * 8,
        name="predict",
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()


def test_python_api_serves_every_route_of_its_mlflow(bundle, tmp_path, start_server):
    (bundle / "mlflowctl.json").write_text(json.dumps({"bundleFormat": 1, "appMode": "python-api", "storage": "local"}))
    server = start_server(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data")), wsgi=True)
    status, body = server.get("/api/2.0/mlflow/experiments/search?max_results=1")
    assert status == 200, body[:300]
    trace_id = bytes(range(16))
    headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": "0"}
    # MLflow 2.x has no OpenTelemetry protobufs either: any body shows whether the route exists.
    payload = otlp_span(trace_id) if mlflow_version() >= (3, 3) else b"\x0a\x00"
    status, body = http("POST", server.url("/v1/traces"), body=payload, headers=headers)
    startup = [
        json.loads(line) for line in server.logs().splitlines() if line.startswith("{") and '"startup.ready"' in line
    ]
    if mlflow_version() >= (3, 3):
        assert startup and "a2wsgi" in startup[-1]["interface"], server.logs()[-2000:]
        # The FastAPI-only OTLP route took the span, and the REST API shows the trace it made.
        assert status == 200, body[:300]
        status, found = http(
            "POST",
            server.url("/api/3.0/mlflow/traces/search"),
            body=json.dumps(
                {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 200, found[:300]
        assert trace_id.hex() in found.decode(), found[:500]
        assert server.get("/ajax-api/3.0/mlflow/server-info")[0] == 200
    else:
        # MLflow 2.x has no FastAPI app: Flask answers, and it has no OTLP route.
        assert startup and startup[-1]["interface"] == "wsgi", server.logs()[-2000:]
        assert status == 404


@pytest.mark.needs_mlflow((3, 3))
def test_flask_routes_skip_the_fastapi_app_and_its_own_routes_keep_it(tmp_path, monkeypatch):
    """The REST API is Flask's: its requests go to Flask directly. The FastAPI app's own routes (artifact streaming,
    OTLP, server info) still go to it, and a path it serves for another method only goes to Flask (its router passes
    that one on to the mount too)."""
    monkeypatch.chdir(tmp_path)  # importing MLflow's server makes a default ./mlruns
    from mlflow.server.fastapi_app import app as asgi_app
    from mlflowctl_extension.dispatch import NativeRoutes

    routes = NativeRoutes(asgi_app)
    assert routes.flask_bridge is not None
    for method, path in [
        ("POST", "/api/2.0/mlflow/runs/create"),
        ("POST", "/api/2.0/mlflow/runs/log-batch"),
        ("GET", "/api/2.0/mlflow/experiments/search"),
        ("GET", "/"),
        ("GET", "/static-files/index.html"),
        ("DELETE", "/ajax-api/3.0/mlflow/server-info"),
    ]:
        assert not routes.claims(method, path), (method, path)
    for method, path in [
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/run/artifacts/blob.bin"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/run/artifacts/blob.bin"),
        ("POST", "/v1/traces"),
        ("GET", "/ajax-api/3.0/mlflow/server-info"),
    ]:
        assert routes.claims(method, path), (method, path)


@pytest.mark.needs_mlflow((3, 5))
@pytest.mark.parametrize("wsgi", [False, True], ids=["python-fastapi", "python-api"])
def test_both_app_modes_keep_mlflows_host_check_and_security_headers_on_every_route(
    bundle, tmp_path, start_server, wsgi
):
    """Requests for Flask routes no longer cross the FastAPI app's middleware: Flask's own (which MLflow installs when
    it runs as a server) must refuse a Host outside the allow-list and add the security headers, as the FastAPI app's
    own routes do."""
    (bundle / "mlflowctl.json").write_text(
        json.dumps({"bundleFormat": 1, "appMode": "python-api" if wsgi else "python-fastapi", "storage": "local"})
    )
    env = base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"), MLFLOW_SERVER_ALLOWED_HOSTS="127.0.0.1:*")
    server = start_server(bundle, env, wsgi=wsgi)
    for path in ["/api/2.0/mlflow/experiments/search?max_results=1", "/ajax-api/3.0/mlflow/server-info"]:
        status, body = http("GET", server.url(path), headers={"Host": "attacker.example"})
        assert status == 403, (path, status, body[:200])
        request = Request(server.url(path))
        with urlopen(request, timeout=30) as answer:
            assert answer.status == 200
            assert answer.headers.get("X-Content-Type-Options") == "nosniff", (path, dict(answer.headers))
