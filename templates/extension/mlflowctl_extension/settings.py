"""Reads the environment into a typed StorageConfig; every failure names the variables involved."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .logs import register_secret

# The variables that select each mode, as the extension's README documents them. The cloud modes
# (aws, azure, gcp) are detected here already so that a bundle that does not implement them yet
# refuses clearly instead of silently falling back to local storage.
MODE_TRIGGERS: dict[str, tuple[str, ...]] = {
    "aws": ("RDS_ENDPOINT",),
    "azure": ("AZURE_DATABASE_SERVER",),
    "gcp": ("CLOUD_SQL_CONNECTION_NAME",),
    "custom": ("MLFLOW_BACKEND_STORE_URI",),
}
IMPLEMENTED_MODES = ("local", "custom")
ALL_MODES = ("local", "custom", "aws", "azure", "gcp")
SQLITE_FILE = "mlflow.db"


class StartupError(RuntimeError):
    """The extension refuses to start; the message says why and names the variables."""


@dataclass(frozen=True)
class StorageConfig:
    mode: str
    backend_store_uri: str
    artifacts_destination: str
    data_dir: Path | None
    # Where pre-migration snapshots and lock files go; None when there is no local data dir.
    state_dir: Path | None = None
    sqlite_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise StartupError(f"{name} must be true or false, got {raw!r}.")


def auto_migrate_enabled(env: Mapping[str, str]) -> bool:
    """MLFLOWCTL_AUTO_MIGRATE (default true) decides whether a DB behind the code is upgraded."""
    return _flag(env, "MLFLOWCTL_AUTO_MIGRATE", True)


def detect_mode(env: Mapping[str, str]) -> str:
    """Chooses the storage mode from the variables present; refuses contradictions."""
    triggered = [mode for mode, names in MODE_TRIGGERS.items() if any(env.get(n) for n in names)]
    explicit = (env.get("MLFLOWCTL_STORAGE_MODE") or "").strip().lower()
    if explicit and explicit not in ALL_MODES:
        raise StartupError(f"MLFLOWCTL_STORAGE_MODE must be one of {', '.join(ALL_MODES)}, got {explicit!r}.")
    if len(triggered) > 1:
        names = [MODE_TRIGGERS[m][0] for m in triggered]
        raise StartupError(
            f"Contradictory storage settings: {' and '.join(names)} are both set, which select the "
            f"{' and '.join(triggered)} modes. Unset all but one."
        )
    detected = triggered[0] if triggered else "local"
    if explicit and explicit != detected:
        reason = f"{MODE_TRIGGERS[detected][0]} is set" if triggered else "no external storage variable is set"
        raise StartupError(
            f"MLFLOWCTL_STORAGE_MODE={explicit} contradicts the environment: {reason}, which selects {detected}."
        )
    if detected != "local" and env.get("MLFLOW_DATA_DIR"):
        raise StartupError(
            f"Contradictory storage settings: MLFLOW_DATA_DIR selects local storage but "
            f"{MODE_TRIGGERS[detected][0]} selects {detected}. Unset one of them."
        )
    return detected


def load_storage_config(env: Mapping[str, str]) -> StorageConfig:
    """Builds the StorageConfig for the detected mode.

    @raises StartupError naming every missing or contradictory variable.
    """
    mode = detect_mode(env)
    if mode not in IMPLEMENTED_MODES:
        raise StartupError(
            f"Storage mode {mode} (selected by {MODE_TRIGGERS[mode][0]}) is not implemented by extension "
            f"bundles of this mlflowctl version; implemented modes: {', '.join(IMPLEMENTED_MODES)}."
        )
    if mode == "local":
        return _local_config(env)
    return _custom_config(env)


def _local_config(env: Mapping[str, str]) -> StorageConfig:
    source = "MLFLOW_DATA_DIR" if env.get("MLFLOW_DATA_DIR") else "CONNECT_CONTENT_DATA_DIR"
    raw = env.get(source)
    if not raw:
        raise StartupError(
            "Local storage needs CONNECT_CONTENT_DATA_DIR (Connect's persistent per-content data directory, "
            "Connect 2025.10+), and it is not set. Enable persistent storage for this content, set "
            "MLFLOW_DATA_DIR for a local run, or configure external storage with MLFLOW_BACKEND_STORE_URI "
            "and MLFLOW_ARTIFACTS_DESTINATION."
        )
    data_dir = Path(raw).expanduser().resolve()
    try:
        (data_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        (data_dir / "mlflowctl").mkdir(exist_ok=True)
    except OSError as exc:
        raise StartupError(f"{source}={data_dir} is not a writable directory: {exc.strerror}.") from exc
    sqlite_path = data_dir / SQLITE_FILE
    return StorageConfig(
        mode="local",
        backend_store_uri=f"sqlite:///{sqlite_path}",
        artifacts_destination=str(data_dir / "artifacts"),
        data_dir=data_dir,
        state_dir=data_dir / "mlflowctl",
        sqlite_path=sqlite_path,
    )


def _custom_config(env: Mapping[str, str]) -> StorageConfig:
    uri = env.get("MLFLOW_BACKEND_STORE_URI", "").strip()
    destination = env.get("MLFLOW_ARTIFACTS_DESTINATION", "").strip()
    if not destination:
        raise StartupError(
            "Custom storage needs MLFLOW_ARTIFACTS_DESTINATION (where the server stores proxied artifacts, "
            "for example s3://bucket/prefix or an absolute path) next to MLFLOW_BACKEND_STORE_URI, and it is not set."
        )
    parts = urlsplit(uri)
    register_secret(parts.password)
    scheme = parts.scheme.split("+")[0]
    if scheme not in ("sqlite", "postgresql", "mysql", "mssql"):
        raise StartupError(
            f"MLFLOW_BACKEND_STORE_URI must be a database URL (sqlite, postgresql, mysql or mssql), got scheme {parts.scheme!r}."
        )
    data_dir_raw = env.get("CONNECT_CONTENT_DATA_DIR")
    data_dir = Path(data_dir_raw).resolve() if data_dir_raw else None
    sqlite_path = Path(uri.split(":///", 1)[1]) if scheme == "sqlite" and ":///" in uri else None
    state_dir = data_dir / "mlflowctl" if data_dir else None
    if state_dir:
        state_dir.mkdir(parents=True, exist_ok=True)
    return StorageConfig(
        mode="custom",
        backend_store_uri=uri,
        artifacts_destination=destination,
        data_dir=data_dir,
        state_dir=state_dir,
        sqlite_path=sqlite_path,
    )


def connect_public_url(env: Mapping[str, str]) -> str | None:
    """The public Connect URL the content is served under, if Connect told us."""
    server = (env.get("CONNECT_SERVER") or "").strip()
    return server or None


def read_env() -> dict[str, str]:
    return dict(os.environ)
