"""Startup as Connect does it (import app.py) against real MLflow: initialisation and every refusal."""
import json
import sqlite3

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


def test_missing_data_dir_refuses_and_names_the_variable(bundle):
    result = import_app(bundle, base_env())
    assert result.returncode != 0
    assert "CONNECT_CONTENT_DATA_DIR" in result.stderr
    assert any(e["event"] == "startup.refused" for e in events(result.stderr))


def test_database_ahead_of_the_code_is_refused_naming_the_revision(bundle, tmp_path):
    env = base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"))
    assert import_app(bundle, env).returncode == 0
    db = tmp_path / "data" / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fedcba987654'")
    result = import_app(bundle, env)
    assert result.returncode != 0
    assert "fedcba987654" in result.stderr and "Refusing to start" in result.stderr
    assert revision(db) == "fedcba987654"  # untouched


def test_tables_without_a_revision_are_refused(bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "mlflow.db") as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    result = import_app(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(data)))
    assert result.returncode != 0
    assert "no alembic_version revision" in result.stderr


def test_pending_migrations_with_auto_migrate_off_are_refused_and_nothing_changes(bundle, tmp_path):
    from mlflow.store.db.utils import _get_alembic_config
    from alembic.script import ScriptDirectory

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
