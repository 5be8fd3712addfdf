"""Storage-mode selection and its refusals: every error names the variables involved."""

import pytest
from mlflowctl_extension.settings import StartupError, auto_migrate_enabled, detect_mode, load_storage_config


def test_local_mode_uses_connect_data_dir(tmp_path):
    config = load_storage_config({"CONNECT_CONTENT_DATA_DIR": str(tmp_path)})
    assert config.mode == "local"
    assert config.backend_store_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert config.artifacts_destination == str(tmp_path.resolve() / "artifacts")
    assert (tmp_path / "artifacts").is_dir()


def test_mlflow_data_dir_overrides_connect_data_dir(tmp_path):
    config = load_storage_config({"CONNECT_CONTENT_DATA_DIR": "/nonexistent/connect", "MLFLOW_DATA_DIR": str(tmp_path)})
    assert config.data_dir == tmp_path.resolve()


def test_local_mode_without_data_dir_names_the_variable():
    with pytest.raises(StartupError, match="CONNECT_CONTENT_DATA_DIR"):
        load_storage_config({})


def test_custom_mode_needs_artifacts_destination():
    with pytest.raises(StartupError, match="MLFLOW_ARTIFACTS_DESTINATION"):
        load_storage_config({"MLFLOW_BACKEND_STORE_URI": "postgresql://u:p@h/db"})


def test_custom_mode_rejects_non_database_uri(tmp_path):
    with pytest.raises(StartupError, match="MLFLOW_BACKEND_STORE_URI"):
        load_storage_config(
            {"MLFLOW_BACKEND_STORE_URI": "file:///tmp/mlruns", "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path)}
        )


def test_custom_mode(tmp_path):
    config = load_storage_config(
        {"MLFLOW_BACKEND_STORE_URI": "postgresql://u:p@h/db", "MLFLOW_ARTIFACTS_DESTINATION": "s3://b/p"}
    )
    assert (config.mode, config.backend_store_uri, config.artifacts_destination) == (
        "custom",
        "postgresql://u:p@h/db",
        "s3://b/p",
    )


@pytest.mark.parametrize(
    "env, names",
    [
        (
            {"RDS_ENDPOINT": "x", "MLFLOW_BACKEND_STORE_URI": "sqlite:///x"},
            ["RDS_ENDPOINT", "MLFLOW_BACKEND_STORE_URI"],
        ),
        (
            {"AZURE_DATABASE_SERVER": "x", "CLOUD_SQL_CONNECTION_NAME": "p:r:i"},
            ["AZURE_DATABASE_SERVER", "CLOUD_SQL_CONNECTION_NAME"],
        ),
        (
            {"MLFLOW_DATA_DIR": "/tmp/x", "MLFLOW_BACKEND_STORE_URI": "sqlite:///x"},
            ["MLFLOW_DATA_DIR", "MLFLOW_BACKEND_STORE_URI"],
        ),
        ({"MLFLOWCTL_STORAGE_MODE": "custom"}, ["MLFLOWCTL_STORAGE_MODE"]),
    ],
)
def test_contradictions_name_every_variable(env, names):
    with pytest.raises(StartupError) as caught:
        detect_mode(env)
    for name in names:
        assert name in str(caught.value)


@pytest.mark.parametrize(
    "trigger, mode", [("RDS_ENDPOINT", "aws"), ("AZURE_DATABASE_SERVER", "azure"), ("CLOUD_SQL_CONNECTION_NAME", "gcp")]
)
def test_cloud_modes_are_detected_and_name_their_missing_variables(trigger, mode):
    assert detect_mode({trigger: "x"}) == mode
    with pytest.raises(StartupError, match=f"Storage mode {mode} needs .*MLFLOW_ARTIFACTS_DESTINATION"):
        load_storage_config({trigger: "x"})


@pytest.mark.parametrize("raw, expected", [(None, True), ("", True), ("false", False), ("0", False), ("TRUE", True)])
def test_auto_migrate_flag(raw, expected):
    env = {} if raw is None else {"MLFLOWCTL_AUTO_MIGRATE": raw}
    assert auto_migrate_enabled(env) is expected


def test_auto_migrate_rejects_garbage():
    with pytest.raises(StartupError, match="MLFLOWCTL_AUTO_MIGRATE"):
        auto_migrate_enabled({"MLFLOWCTL_AUTO_MIGRATE": "maybe"})


def test_replica_settings_come_from_the_environment_with_their_defaults_and_say_why_a_value_is_refused():
    from mlflowctl_extension.settings import REPLICA_RETENTION, load_replica_settings

    assert load_replica_settings({}) is None
    tuned = load_replica_settings(
        {
            "MLFLOWCTL_REPLICA_URL": "s3://bucket/replica",
            "MLFLOWCTL_REPLICA_INTERVAL": "0.5",
            "MLFLOWCTL_REPLICA_SNAPSHOT_INTERVAL": "12h",
            "MLFLOWCTL_REPLICA_MAX_WAL": "64MiB",
        }
    )
    assert tuned is not None and tuned.invalid is None
    assert (tuned.url, tuned.interval, tuned.snapshot_interval, tuned.max_wal_bytes) == (
        "s3://bucket/replica",
        0.5,
        12 * 3600,
        64 << 20,
    )
    assert tuned.retention == REPLICA_RETENTION
    refused = load_replica_settings({"MLFLOWCTL_REPLICA_URL": "/srv/replica", "MLFLOWCTL_REPLICA_RETENTION": "a week"})
    assert refused is not None and refused.url == "/srv/replica"
    assert refused.invalid == "MLFLOWCTL_REPLICA_*: 'a week' is not a duration (for example 7d, 12h, 30m or 45s)"
