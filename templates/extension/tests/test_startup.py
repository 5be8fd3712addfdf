"""Startup as Connect does it (import app.py) against real MLflow: initialisation and every refusal."""

import json
import sqlite3

import pytest
from conftest import base_env, import_app


def events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "event" in entry:
            out.append(entry)
    return out


def revision(db) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def test_empty_database_is_initialised_to_head_then_left_alone(bundle, tmp_path):
    env = base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"))
    first = import_app(bundle, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert revision(tmp_path / "data" / "mlflow.db") == head()
    kinds = [e["event"] for e in events(first.stderr)]
    assert "migration.start" in kinds and "migration.done" in kinds
    assert any(e["event"] == "migration.step" for e in events(first.stderr))
    second = import_app(bundle, env)
    assert second.returncode == 0, second.stderr[-3000:]
    checks = [e for e in events(second.stderr) if e["event"] == "migration.check"]
    assert checks and checks[0]["state"] == "current"
    assert "migration.start" not in [e["event"] for e in events(second.stderr)]


@pytest.mark.newest_mlflow_only
def test_missing_data_dir_refuses_and_names_the_variable(bundle):
    result = import_app(bundle, base_env())
    assert result.returncode != 0
    assert "CONNECT_CONTENT_DATA_DIR" in result.stderr
    assert any(e["event"] == "startup.refused" for e in events(result.stderr))


def _store_works_script(timeout: int) -> str:
    """Starts the extension, then opens MLflow's own stores on the same database and logs a run through them."""
    return "\n".join(
        [
            "import os, sys, app",
            f"sys.exit(1) if not app.app.startup.wait({timeout}) else None",
            "from mlflow.tracking import MlflowClient",
            "from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore",
            "uri = 'sqlite:///' + os.path.join(os.environ['CONNECT_CONTENT_DATA_DIR'], 'mlflow.db')",
            "client = MlflowClient(tracking_uri=uri)",
            "run = client.create_run(client.create_experiment('written-by-the-older-mlflow'))",
            "client.log_metric(run.info.run_id, 'm', 1.0)",
            "SqlAlchemyStore(uri).create_registered_model('model-after-rollback')",
        ]
    )


def _move_ahead(db, revision: str) -> None:
    """What newer, additive migrations leave: a table and a nullable column this MLflow does not know."""
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE future_things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("ALTER TABLE runs ADD COLUMN future_note TEXT")
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))


def test_a_database_ahead_is_refused_unless_mlflowctl_allows_that_revision_and_this_mlflow_fits_it(bundle, tmp_path):
    import subprocess
    import sys

    env = base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"))
    assert import_app(bundle, env).returncode == 0
    db = tmp_path / "data" / "mlflow.db"
    _move_ahead(db, "fedcba987654")
    # Ahead of the code, with no allowance or one for another revision: refused, naming the revision, untouched.
    refused = import_app(bundle, dict(env, MLFLOWCTL_SCHEMA_AHEAD_ALLOWED="abcdef012345"))
    assert refused.returncode != 0
    assert "fedcba987654" in refused.stderr and "Refusing to start" in refused.stderr
    assert revision(db) == "fedcba987654"
    # Allowed, and this MLflow's models fit it: served as it is, and MLflow's own stores log through it.
    allowed = dict(env, MLFLOWCTL_SCHEMA_AHEAD_ALLOWED="fedcba987654")
    result = subprocess.run(
        [sys.executable, "-c", _store_works_script(230)],
        cwd=bundle,
        env=allowed,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ahead = [e for e in events(result.stderr) if e["event"] == "migration.ahead"]
    assert ahead and ahead[0]["revision"] == "fedcba987654" and ahead[0]["head"] == head()
    assert revision(db) == "fedcba987654"  # never migrated
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE future_note IS NULL").fetchone()[0] >= 1
        # A table this MLflow uses goes missing: allowed or not, it cannot run on that.
        conn.execute("ALTER TABLE experiment_tags RENAME TO experiment_tags_renamed")
    unfit = import_app(bundle, allowed)
    assert unfit.returncode != 0
    refusals = [e for e in events(unfit.stderr) if e["event"] == "startup.refused"]
    assert refusals and refusals[0]["code"] == "DB_AHEAD_NOT_ADDITIVE", unfit.stderr[-2000:]
    assert "table experiment_tags is missing" in unfit.stderr


def test_schema_gaps_names_a_column_that_would_refuse_the_older_mlflows_inserts(tmp_path):
    import sqlalchemy
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflowctl_extension.schema_ahead import schema_gaps

    db = tmp_path / "gaps.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(tmp_path / "artifacts"))
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            DROP TABLE experiment_tags;
            CREATE TABLE experiment_tags (
                key VARCHAR(250) NOT NULL, value VARCHAR(5000), experiment_id INTEGER NOT NULL,
                added_later VARCHAR(10) NOT NULL, added_with_default VARCHAR(10) NOT NULL DEFAULT 'x',
                PRIMARY KEY (key, experiment_id)
            );
            """
        )
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    assert schema_gaps(engine) == ["column experiment_tags.added_later is NOT NULL without a default"]


def test_tables_without_a_revision_are_refused(bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "mlflow.db") as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    result = import_app(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(data)))
    assert result.returncode != 0
    assert "no alembic_version revision" in result.stderr


def test_pending_migrations_with_auto_migrate_off_are_refused_and_nothing_changes(bundle, tmp_path):
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    env = base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"))
    assert import_app(bundle, env).returncode == 0
    db = tmp_path / "data" / "mlflow.db"
    previous = ScriptDirectory.from_config(_get_alembic_config("")).get_revision(head()).down_revision
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (previous,))
    result = import_app(bundle, dict(env, MLFLOWCTL_AUTO_MIGRATE="false"))
    assert result.returncode != 0
    assert "MLFLOWCTL_AUTO_MIGRATE=false" in result.stderr and previous in result.stderr
    assert revision(db) == previous


def test_custom_postgres_initialises_and_never_logs_the_password(bundle, tmp_path, pg_url):
    from urllib.parse import urlsplit

    password = urlsplit(pg_url).password
    env = base_env(MLFLOW_BACKEND_STORE_URI=pg_url, MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"))
    result = import_app(bundle, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert password and password not in result.stderr + result.stdout
    config = [e for e in events(result.stderr) if e["event"] == "startup.config"][0]
    assert config["mode"] == "custom" and ":***@" in config["backend"]
    lock = [e for e in events(result.stderr) if e["event"] == "migration.lock"][0]
    assert lock["kind"] == "postgresql-advisory"


def test_unreachable_database_is_refused_without_the_password(bundle, tmp_path):
    env = base_env(
        MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:hunter2-secret@127.0.0.1:1/mlflow",
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
    )
    result = import_app(bundle, env)
    assert result.returncode != 0
    assert "Cannot reach the backend store" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def _store_before_the_metrics_index(tmp_path, metric_rows: int):
    """A local store one step before MLflow 3.12's index on metrics (run_uuid, key, step), the migration that grows
    with the rows: made at head with `metric_rows` metrics, then downgraded by MLflow's own migrations."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    data = tmp_path / "data"
    database = data / "mlflow.db"
    data.mkdir()
    store = SqlAlchemyStore(f"sqlite:///{database}", str(data / "artifacts"))
    run = store.create_run("0", "seed", 0, [], "seed").info.run_id
    store.engine.dispose()
    with sqlite3.connect(database) as connection:
        connection.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, 0.5, ?, ?, ?, 0)",
            ((f"m{i % 20}", i, run, i) for i in range(metric_rows)),
        )
    command.downgrade(_get_alembic_config(f"sqlite:///{database}"), "c3d6457b6d8a")
    return data, database


@pytest.mark.needs_mlflow((3, 12))
def test_a_migration_runs_behind_503_and_a_kill_inside_the_longest_one_leaves_a_store_the_next_start_finishes(
    bundle, tmp_path
):
    """Connect kills a process that has not answered within init_timeout, so the extension answers at once and
    migrates on a thread of its own: /health says 'migrating' with the step, MLflow's routes answer 503 with
    Retry-After, the ops status reports it. A SIGKILL inside the index build leaves the store at the revision it
    started from, intact; the next start runs the migrations again and serves."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import free_port, http

    data, database = _store_before_the_metrics_index(tmp_path, 2_000_000)
    token = "ops-token-for-startup-tests-0123456789"
    env = base_env(CONNECT_CONTENT_DATA_DIR=str(data), MLFLOWCTL_OPS_TOKEN=token)
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port"]

    def start(port: int, log) -> subprocess.Popen:
        return subprocess.Popen(
            [*command, str(port)], cwd=bundle, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "first.log", "wb") as log:
        process = start(port, log)
        seen: dict = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            try:
                code, body = http("GET", f"{url}/health")
            except OSError:
                time.sleep(0.02)
                continue
            assert code == 503, (code, body)
            view = json.loads(body)
            if view["state"] == "migrating" and view["migration"]["revision"] == "a5b4c3d2e1f0":
                seen = view
                break
            time.sleep(0.02)
        assert seen, f"never saw the index migration: {(tmp_path / 'first.log').read_text()[-3000:]}"
        # Inside the migration: every MLflow route is 503 with Retry-After, the ops status says what runs.
        code, body = http("GET", f"{url}/api/2.0/mlflow/experiments/search?max_results=1")
        assert code == 503 and "migrating its database schema" in json.loads(body)["message"]
        import urllib.request

        try:
            urllib.request.urlopen(f"{url}/version", timeout=10)
            raise AssertionError("/version answered while migrating")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and exc.headers["Retry-After"]
        code, body = http("GET", f"{url}/_mlflowctl/status", headers={"X-Mlflowctl-Ops-Token": token})
        status = json.loads(body)
        assert code == 503 and status["startup"]["state"] == "migrating", status
        assert (
            status["startup"]["migration"]["from"] == "c3d6457b6d8a" and status["startup"]["migration"]["to"] == head()
        )
        process.send_signal(signal.SIGKILL)
        process.wait()

    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "c3d6457b6d8a"
        assert connection.execute("SELECT count(*) FROM metrics").fetchone()[0] == 2_000_000
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "second.log", "wb") as log:
        process = start(port, log)
        try:
            deadline = time.monotonic() + 240
            code = 0
            while time.monotonic() < deadline and code != 200:
                time.sleep(0.2)
                try:
                    code, _ = http("GET", f"{url}/health")
                except OSError:
                    pass
            assert code == 200, (tmp_path / "second.log").read_text()[-3000:]
            status = json.loads(http("GET", f"{url}/_mlflowctl/status", headers={"X-Mlflowctl-Ops-Token": token})[1])
            assert status["dbRevision"] == head() and status["startup"]["state"] == "ready"
            assert (
                status["startup"]["migration"]["from"] == "c3d6457b6d8a"
                and status["startup"]["migration"]["finishedAt"]
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM metrics").fetchone()[0] == 2_000_000
        indexes = [row[1] for row in connection.execute("PRAGMA index_list('metrics')")]
        assert "index_metrics_run_uuid_key_step" in indexes


@pytest.mark.newest_mlflow_only
def test_a_refusal_keeps_answering_with_its_reason(bundle, tmp_path):
    """A start that is refused does not exit (Connect would start it again and again): /health answers 503 with
    state 'refused', the code and the message, so that deploy and doctor can say why."""
    import subprocess
    import time

    from conftest import free_port, http, server_command

    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            server_command(port), cwd=bundle, env=base_env(), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        view: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and view.get("state") != "refused":
            time.sleep(0.2)
            try:
                view = json.loads(http("GET", f"http://127.0.0.1:{port}/health")[1])
            except OSError:
                pass
        assert view["state"] == "refused" and view["error"]["code"] == "DATA_DIR_MISSING", view
        assert "CONNECT_CONTENT_DATA_DIR" in view["error"]["message"]
        assert process.poll() is None, "the process keeps serving its refusal"
    finally:
        process.terminate()
        process.wait(timeout=30)
