"""python-api content served by a WSGI server, as Connect serves it, with real MLflow. A deployed item keeps its
first app mode (Connect refuses a change, error 48), so content that started on MLflow 2.x stays python-api after
an upgrade to 3.3+: there the extension serves the FastAPI app through a2wsgi, so the FastAPI-only routes (OTLP
trace ingestion, server info) answer as they do under python-fastapi. Before 3.3 there is only the Flask app."""
from __future__ import annotations

import json
import time

from conftest import base_env, http, mlflow_version


def otlp_span(trace_id: bytes) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    now = time.time_ns()
    span = Span(trace_id=trace_id, span_id=b"\x01" * 8, name="predict", start_time_unix_nano=now - 1_000_000, end_time_unix_nano=now)
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]).SerializeToString()


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
    startup = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{") and '"startup.ready"' in line]
    if mlflow_version() >= (3, 3):
        assert startup and "a2wsgi" in startup[-1]["interface"], server.logs()[-2000:]
        # The FastAPI-only OTLP route took the span, and the REST API shows the trace it made.
        assert status == 200, body[:300]
        status, found = http("POST", server.url("/api/3.0/mlflow/traces/search"), body=json.dumps({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]}).encode(), headers={"Content-Type": "application/json"})
        assert status == 200, found[:300]
        assert trace_id.hex() in found.decode(), found[:500]
        assert server.get("/ajax-api/3.0/mlflow/server-info")[0] == 200
    else:
        # MLflow 2.x has no FastAPI app: Flask answers, and it has no OTLP route.
        assert startup and startup[-1]["interface"] == "wsgi", server.logs()[-2000:]
        assert status == 404
