"""GET /_mlflowctl/status behind the token, at the root and under a /content/<guid>/ prefix."""

import json

import pytest
from conftest import base_env, http
from test_metrics import check_with_promtool, samples

GUID = "0b0e8e8e-1111-2222-3333-444455556666"
TOKEN = "ops-token-for-tests-0123456789"


@pytest.mark.newest_mlflow_only
def test_status_requires_the_token_and_reports_the_schema(bundle, tmp_path, start_server):
    server = start_server(
        bundle,
        base_env(
            CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"),
            MLFLOWCTL_OPS_TOKEN=TOKEN,
            CONNECT_SERVER="http://127.0.0.1:1/",
        ),
    )
    assert server.get("/_mlflowctl/status")[0] == 401
    assert server.get("/_mlflowctl/status", {"X-Mlflowctl-Ops-Token": "wrong"})[0] == 401
    status, body = server.get("/_mlflowctl/status", {"X-Mlflowctl-Ops-Token": TOKEN})
    assert status == 200
    payload = json.loads(body)
    import mlflow
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert payload["dbRevision"] == payload["expectedHead"] == _get_latest_schema_revision()
    assert payload["mlflowVersion"] == mlflow.__version__
    assert payload["storageMode"] == "local" and payload["schemaState"] == "current"
    assert payload["dataDirFreeBytes"] > 0
    # What `upgrade plan` reads: the dialect, the runtime, the tables and cheap row estimates.
    import platform
    import sqlite3

    assert payload["dbDialect"] == "sqlite" and payload["pythonVersion"] == platform.python_version()
    assert payload["sqliteVersion"] == sqlite3.sqlite_version
    assert "experiments" in payload["tables"] and "alembic_version" in payload["tables"]
    assert isinstance(payload["rowEstimates"]["metrics"], int) and "experiments" in payload["rowEstimates"]
    assert server.get("/_mlflowctl/nope", {"X-Mlflowctl-Ops-Token": TOKEN})[0] == 404
    # The metrics: behind the same token; the deployment's state, and the requests this process answered.
    assert server.get("/_mlflowctl/metrics")[0] == 401
    status, body = http(
        "POST",
        server.url("/api/2.0/mlflow/experiments/create"),
        json.dumps({"name": "counted"}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    status, text = server.get("/_mlflowctl/metrics", {"X-Mlflowctl-Ops-Token": TOKEN})
    assert status == 200
    found = samples(text)
    check_with_promtool(text)
    assert found["mlflowctl_up"][0].value == 1 and found["mlflowctl_schema_current"][0].value == 1
    (build,) = found["mlflowctl_build_info"]
    assert build.labels["mlflow_version"] == mlflow.__version__ and build.labels["storage_mode"] == "local"
    assert found["mlflowctl_schema_info"][0].labels["revision"] == payload["dbRevision"]
    assert found["mlflowctl_database_bytes"][0].value > 0 and found["mlflowctl_artifact_bytes"][0].value >= 0
    created = [
        s for s in found["mlflowctl_http_requests_total"] if s.labels == {"route": "experiments", "status": "200"}
    ]
    assert created and created[0].value >= 1, [(s.labels, s.value) for s in found["mlflowctl_http_requests_total"]]
    # Timed once complete: the readiness checks before the request above, certainly.
    timed = [s for s in found["mlflowctl_http_request_duration_seconds_count"] if s.labels["route"] == "health"]
    assert timed and timed[0].value >= 1
    assert TOKEN not in server.logs()


def test_full_path_prefix_is_stripped_for_ops_and_rest(bundle, tmp_path, start_server):
    server = start_server(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"), MLFLOWCTL_OPS_TOKEN=TOKEN))
    assert server.get(f"/content/{GUID}/_mlflowctl/status", {"X-Mlflowctl-Ops-Token": TOKEN})[0] == 200
    status, body = http(
        "POST",
        server.url(f"/content/{GUID}/api/2.0/mlflow/experiments/create"),
        json.dumps({"name": "prefixed"}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    status, body = server.get(
        f"/content/{GUID}/_bundle12/api/2.0/mlflow/experiments/get-by-name?experiment_name=prefixed"
    )
    assert status == 200 and json.loads(body)["experiment"]["name"] == "prefixed"
    assert server.get(f"/content/{GUID}/health")[0] == 200


@pytest.mark.newest_mlflow_only
def test_without_a_configured_token_the_endpoint_stays_closed(bundle, tmp_path, start_server):
    server = start_server(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data")))
    assert server.get("/_mlflowctl/status", {"X-Mlflowctl-Ops-Token": ""})[0] == 503
