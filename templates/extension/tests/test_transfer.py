"""POST /_mlflowctl/snapshot and /_mlflowctl/restore on a real server (WSGI on 2.x, ASGI on 3.x)."""

import io
import json
import os
import tarfile

import pytest
from conftest import base_env, http

TOKEN = "ops-token-for-transfer-tests-0123456789"
OPS = {"X-Mlflowctl-Ops-Token": TOKEN}


def _seed(server) -> tuple[str, bytes]:
    status, body = http(
        "POST",
        server.url("/api/2.0/mlflow/experiments/create"),
        json.dumps({"name": "kept"}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    experiment = json.loads(body)["experiment_id"]
    status, body = http(
        "POST",
        server.url("/api/2.0/mlflow/runs/create"),
        json.dumps({"experiment_id": experiment}).encode(),
        {"Content-Type": "application/json"},
    )
    run = json.loads(body)["run"]["info"]
    content = b"weights \x00\x01 binary"
    path = f"{experiment}/{run['run_id']}/artifacts/model.bin"
    assert http("PUT", server.url(f"/api/2.0/mlflow-artifacts/artifacts/{path}"), content)[0] == 200
    return path, content


def _entries(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar}


def test_snapshot_streams_the_db_and_artifacts_and_restore_swaps_them_into_another_deployment(
    bundle, tmp_path, start_server
):
    source = start_server(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "a"), MLFLOWCTL_OPS_TOKEN=TOKEN))
    path, content = _seed(source)
    assert http("POST", source.url("/_mlflowctl/snapshot"))[0] == 401
    status, blob = http("POST", source.url("/_mlflowctl/snapshot"), b"", OPS)
    assert status == 200, blob[:300]
    entries = _entries(blob)
    assert list(entries)[0] == "db/mlflow.db" and entries[f"artifacts/{path}"] == content
    assert list(entries)[-1] == "transfer.json" and json.loads(entries["transfer.json"])["files"] == len(entries) - 1

    target = start_server(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "b"), MLFLOWCTL_OPS_TOKEN=TOKEN))
    assert http("POST", target.url("/_mlflowctl/restore"), blob, {"X-Mlflowctl-Ops-Token": "wrong"})[0] == 401
    status, body = http("POST", target.url("/_mlflowctl/restore"), blob, OPS)
    assert status == 200, body
    assert json.loads(body)["restored"] is True
    status, body = target.get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=kept")
    assert status == 200, body
    assert http("GET", target.url(f"/api/2.0/mlflow-artifacts/artifacts/{path}")) == (200, content)
    # The target now holds data: a second restore needs force; an upload with a path-traversal entry is refused.
    status, body = http("POST", target.url("/_mlflowctl/restore"), blob, OPS)
    assert status == 409 and json.loads(body)["error"] == "TARGET_NOT_EMPTY"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:") as tar:
        info = tarfile.TarInfo("artifacts/../../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    status, body = http("POST", target.url("/_mlflowctl/restore"), evil.getvalue(), {**OPS, "X-Mlflowctl-Force": "1"})
    assert status == 400 and json.loads(body)["error"] == "UPLOAD_REJECTED"
    assert not (tmp_path / "escape.txt").exists()
    assert target.get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=kept")[0] == 200, "the data is as it was"
    status, body = http("POST", target.url("/_mlflowctl/restore"), blob, {**OPS, "X-Mlflowctl-Force": "1"})
    assert status == 200, body
    assert [p.name for p in (tmp_path / "b").glob(".mlflowctl-*")] == [".mlflowctl-restore.lock"], (
        "no upload, flag or work directory is left behind"
    )
    assert TOKEN not in target.logs()


def test_a_hold_for_this_bundle_answers_503_and_refuses_a_restart_while_another_bundle_clears_it(tmp_path, monkeypatch):
    """The hold a held restore leaves (upgrade rollback): this MLflow's processes stop serving and would not
    start again over the older data; a bundle with another head (the previous one) takes the data over."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pytest
    from mlflowctl_extension.migrations import expected_head
    from mlflowctl_extension.settings import StartupError, load_storage_config
    from mlflowctl_extension.transfer import HOLD_FILE, maintenance_active, recover

    storage = load_storage_config(base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data")))
    hold = storage.data_dir / HOLD_FILE
    assert not maintenance_active(storage)
    hold.write_text(json.dumps({"head": expected_head(), "revision": "0584bdc529eb"}))
    assert maintenance_active(storage)
    with pytest.raises(StartupError, match="restored to an older schema"):
        recover(storage)
    assert hold.exists()
    hold.write_text(json.dumps({"head": "another-head", "revision": expected_head()}))
    assert not maintenance_active(storage)
    recover(storage)
    assert not hold.exists()


@pytest.mark.newest_mlflow_only
@pytest.mark.parametrize(
    "wsgi",
    [pytest.param(False, marks=pytest.mark.needs_mlflow((3, 3)), id="asgi-host"), pytest.param(True, id="wsgi-host")],
)
def test_a_refused_upload_answers_401_even_when_the_body_outgrows_the_socket_buffers(
    bundle, tmp_path, start_server, wsgi
):
    """A host closes the connection on a body the app left unread: a client still sending a large archive with a
    wrong token then saw a broken pipe, not the 401 that says what to fix."""
    app_mode = "python-api" if wsgi else "python-fastapi"
    (bundle / "mlflowctl.json").write_text(json.dumps({"bundleFormat": 1, "appMode": app_mode, "storage": "local"}))
    server = start_server(
        bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "a"), MLFLOWCTL_OPS_TOKEN=TOKEN), wsgi
    )
    body = os.urandom(16 << 20)
    status, answer = http("POST", server.url("/_mlflowctl/restore"), body, {"X-Mlflowctl-Ops-Token": "wrong"})
    assert status == 401 and json.loads(answer)["error"] == "OPS_TOKEN_INVALID", answer[:200]
    assert not list((tmp_path / "a").glob(".mlflowctl-upload-*")), "a refused upload must not be spooled"
