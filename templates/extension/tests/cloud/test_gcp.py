"""Storage mode gcp, in the gcp bundle's venv: GCS artifacts through MLflow's own repository with
Connect-issued tokens (against gcp-storage-emulator), and the Cloud SQL connector presenting the
Connect-issued token to the Cloud SQL Admin API, up to where Google's real API would take over."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import require

BUCKET = "mlflow-artifacts"
EMULATORS_PYTHON = os.environ.get("MLFLOWCTL_TEST_EMULATORS_PYTHON", "")


def gcp_env(exchange_url_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **exchange_url_env,
        "CLOUD_SQL_CONNECTION_NAME": "mlflow-project:us-central1:mlflow-db",
        "CLOUD_SQL_DATABASE": "mlflow",
        "CLOUD_SQL_USERNAME": "mlflow-sa@mlflow-project.iam",
        "MLFLOW_ARTIFACTS_DESTINATION": f"gs://{BUCKET}/mlflow",
        **extra,
    }


def short_lived_tokens(exchange_server, lifetime: int) -> list[str]:
    issued: list[str] = []

    def answer():
        issued.append(f"ya29.fake-{uuid.uuid4().hex}")
        return 200, {
            "access_token": issued[-1],
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": lifetime,
        }

    exchange_server.answer = answer
    return issued


@pytest.fixture
def gcs_emulator():
    binary = Path(EMULATORS_PYTHON).parent / "gcp-storage-emulator"
    require(
        binary.exists(),
        "gcp-storage-emulator is missing; run `node scripts/provision.mjs` and the tests through `npm test`",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def test_artifacts_go_to_gcs_with_connect_tokens_that_are_renewed(gcs_emulator, exchange_server, monkeypatch, tmp_path):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflowctl_extension.cloud import activate
    from mlflowctl_extension.settings import load_storage_config

    issued = short_lived_tokens(exchange_server, lifetime=2)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    env = gcp_env(exchange_server.env())
    runtime = activate(load_storage_config(env), env)
    assert runtime.storage.backend_store_uri == "postgresql+pg8000://mlflow-sa%40mlflow-project.iam@/mlflow"
    source = tmp_path / "model.txt"
    source.write_text("weights-v1")
    repo = get_artifact_repository(f"gs://{BUCKET}/mlflow/1/run-a/artifacts")
    repo.log_artifact(str(source))
    (tmp_path / "out").mkdir()
    assert Path(repo.download_artifacts("model.txt", dst_path=str(tmp_path / "out"))).read_text() == "weights-v1"
    before = len(issued)
    time.sleep(2.5)  # the token has expired: the next call must renew it first
    source.write_text("weights-v2")
    get_artifact_repository(f"gs://{BUCKET}/mlflow/1/run-b/artifacts").log_artifact(str(source))
    assert len(issued) > before, "an expired token was not renewed"
    listed = [f.path for f in get_artifact_repository(f"gs://{BUCKET}/mlflow/1/run-b/artifacts").list_artifacts()]
    assert listed == ["model.txt"]
    status = runtime.status()
    assert status["credentialsSource"] == "connect" and status["credentials"][0]["name"] == "google"
    assert not any(token in repr(status) for token in issued)


class AdminApi:
    """Stands where the Cloud SQL Admin API would: records what the connector presents, then refuses."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.authorizations.append(self.headers.get("authorization", ""))
                body = b'{"error": {"code": 403, "message": "fake admin API: not a real project", "status": "PERMISSION_DENIED"}}'
                self.send_response(403)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_cloud_sql_connector_presents_the_connect_token_and_the_startup_error_is_clear(exchange_server, bundle):
    from conftest import base_env, import_app

    issued = short_lived_tokens(exchange_server, lifetime=600)
    admin = AdminApi()
    try:
        env = base_env(**gcp_env(exchange_server.env(), MLFLOWCTL_CLOUD_SQL_ADMIN_ENDPOINT=admin.url))
        result = import_app(bundle, env)
    finally:
        admin.server.shutdown()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "startup.refused" in output and "Cannot reach the backend store" in output, output[-3000:]
    assert admin.authorizations, "the connector never called the Cloud SQL Admin API"
    assert all(a == f"Bearer {issued[0]}" for a in admin.authorizations), admin.authorizations
    assert issued[0] not in output, "a token reached the logs"
