"""Reads the environment into a typed StorageConfig; every failure names the variables involved."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .logs import register_secret

# The variables that select each mode, as the extension's README documents them.
MODE_TRIGGERS: dict[str, tuple[str, ...]] = {
    "aws": ("RDS_ENDPOINT",),
    "azure": ("AZURE_DATABASE_SERVER",),
    "gcp": ("CLOUD_SQL_CONNECTION_NAME",),
    "custom": ("MLFLOW_BACKEND_STORE_URI",),
}
ALL_MODES = ("local", "custom", "aws", "azure", "gcp")
SQLITE_FILE = "mlflow.db"


class StartupError(RuntimeError):
    """The extension refuses to start; the message says why and names the variables. `code` is what /health
    reports, so that deploy and doctor can name the cause (STARTUP_REFUSED unless a cause has its own)."""

    def __init__(self, message: str, code: str = "STARTUP_REFUSED") -> None:
        super().__init__(message)
        self.code = code


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
    cloud: CloudSettings | None = None


@dataclass(frozen=True)
class CloudSettings:
    """Where the external database is and how to authenticate to it; never holds a token."""

    provider: str  # aws | azure | gcp
    db_type: str  # postgresql | sqlserver
    host: str | None
    port: int | None
    database: str
    username: str
    region: str | None = None
    # "connect": the content's Connect OAuth integration; "ambient": the cloud SDK's own chain
    # (static keys in the environment, instance roles, workload identity, ADC).
    credentials: str = "connect"
    db_audience: str | None = None
    artifacts_audience: str | None = None
    ca_bundle: str | None = None
    sslmode: str = "verify-full"
    connection_name: str | None = None  # gcp
    ip_type: str = "PUBLIC"  # gcp
    static_password_env: str | None = None  # gcp: CLOUD_SQL_PASSWORD set means a built-in DB user
    blob_endpoint: str | None = None  # azure: overrides https://<account>.blob.core.windows.net


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


def ahead_allowed(env: Mapping[str, str]) -> str | None:
    """MLFLOWCTL_SCHEMA_AHEAD_ALLOWED: the one newer schema revision mlflowctl found additive (an instant rollback)."""
    return (env.get("MLFLOWCTL_SCHEMA_AHEAD_ALLOWED") or "").strip() or None


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
    if mode == "local":
        return _local_config(env)
    if mode == "custom":
        return _custom_config(env)
    return _cloud_config(mode, env)


def _local_config(env: Mapping[str, str]) -> StorageConfig:
    source = "MLFLOW_DATA_DIR" if env.get("MLFLOW_DATA_DIR") else "CONNECT_CONTENT_DATA_DIR"
    raw = env.get(source)
    if not raw:
        raise StartupError(
            "Local storage needs CONNECT_CONTENT_DATA_DIR (Connect's persistent per-content data directory, "
            "Connect 2025.10+), and it is not set. Enable persistent storage for this content, set "
            "MLFLOW_DATA_DIR for a local run, or configure external storage with MLFLOW_BACKEND_STORE_URI "
            "and MLFLOW_ARTIFACTS_DESTINATION.",
            code="DATA_DIR_MISSING",
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


CLOUD_REQUIRED: dict[str, tuple[str, ...]] = {
    "aws": ("RDS_ENDPOINT", "RDS_DATABASE", "RDS_USERNAME", "AWS_REGION", "MLFLOW_ARTIFACTS_DESTINATION"),
    "azure": (
        "AZURE_DATABASE_SERVER",
        "AZURE_DATABASE_NAME",
        "AZURE_DATABASE_USERNAME",
        "MLFLOW_ARTIFACTS_DESTINATION",
    ),
    "gcp": ("CLOUD_SQL_CONNECTION_NAME", "CLOUD_SQL_DATABASE", "CLOUD_SQL_USERNAME", "MLFLOW_ARTIFACTS_DESTINATION"),
}
ARTIFACT_SCHEMES = {"aws": "s3", "azure": "wasbs", "gcp": "gs"}


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StartupError(f"{name} must be a TCP port number, got {raw!r}.")
    return int(raw)


def _credentials_source(mode: str, env: Mapping[str, str]) -> str:
    explicit = (env.get("MLFLOWCTL_CREDENTIALS") or "").strip().lower()
    if explicit and explicit not in ("connect", "ambient"):
        raise StartupError(f"MLFLOWCTL_CREDENTIALS must be connect or ambient, got {explicit!r}.")
    if explicit:
        return explicit
    # Explicit static credentials stay possible, never required.
    static = {"aws": "AWS_ACCESS_KEY_ID", "gcp": "GOOGLE_APPLICATION_CREDENTIALS"}.get(mode)
    if static and env.get(static):
        return "ambient"
    # Connect has no GCP integration type (only a custom one), so without a content session token the
    # host's own identity (ADC, the metadata server) is the expected route.
    if mode == "gcp" and not (
        env.get("CONNECT_CONTENT_SESSION_TOKEN") or env.get("CONNECT_CONTENT_SESSION_TOKEN_FILE")
    ):
        return "ambient"
    return "connect"


def _cloud_config(mode: str, env: Mapping[str, str]) -> StorageConfig:
    missing = [name for name in CLOUD_REQUIRED[mode] if not (env.get(name) or "").strip()]
    if missing:
        raise StartupError(
            f"Storage mode {mode} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not set."
        )
    destination = env["MLFLOW_ARTIFACTS_DESTINATION"].strip()
    scheme = ARTIFACT_SCHEMES[mode]
    if not destination.startswith(f"{scheme}://"):
        raise StartupError(
            f"Storage mode {mode} stores artifacts in {scheme}://…; MLFLOW_ARTIFACTS_DESTINATION is {redact_url(destination)}."
        )
    general = (env.get("MLFLOWCTL_OAUTH_INTEGRATION") or "").strip() or None
    common = {
        "credentials": _credentials_source(mode, env),
        "db_audience": (env.get("MLFLOWCTL_DB_OAUTH_INTEGRATION") or "").strip() or general,
        "artifacts_audience": (env.get("MLFLOWCTL_ARTIFACTS_OAUTH_INTEGRATION") or "").strip() or general,
    }
    if mode == "aws":
        db_type = (env.get("RDS_DB_TYPE") or "postgresql").strip().lower()
        if db_type not in ("postgresql", "postgres"):
            raise StartupError(
                f"RDS_DB_TYPE={db_type} is not supported: IAM database authentication is implemented for RDS PostgreSQL only."
            )
        cloud = CloudSettings(
            "aws",
            "postgresql",
            env["RDS_ENDPOINT"].strip(),
            _port(env, "RDS_PORT", 5432),
            env["RDS_DATABASE"].strip(),
            env["RDS_USERNAME"].strip(),
            env["AWS_REGION"].strip(),
            ca_bundle=(env.get("RDS_CA_BUNDLE") or "").strip() or None,
            **common,
        )
    elif mode == "azure":
        db_type = (env.get("AZURE_DATABASE_TYPE") or "postgresql").strip().lower()
        if db_type not in ("postgresql", "sqlserver"):
            raise StartupError(f"AZURE_DATABASE_TYPE must be postgresql or sqlserver, got {db_type!r}.")
        server = env["AZURE_DATABASE_SERVER"].strip()
        if "." not in server and server != "localhost":  # a bare server name, as the portal shows it
            server += ".postgres.database.azure.com" if db_type == "postgresql" else ".database.windows.net"
        ca_bundle = (env.get("AZURE_DATABASE_CA_BUNDLE") or "").strip() or None
        sslmode = (env.get("AZURE_DATABASE_SSLMODE") or "verify-full").strip()
        cloud = CloudSettings(
            "azure",
            db_type,
            server,
            _port(env, "AZURE_DATABASE_PORT", 5432 if db_type == "postgresql" else 1433),
            env["AZURE_DATABASE_NAME"].strip(),
            env["AZURE_DATABASE_USERNAME"].strip(),
            (env.get("AZURE_REGION") or "").strip() or None,
            ca_bundle=ca_bundle,
            sslmode=sslmode,
            blob_endpoint=(env.get("MLFLOWCTL_AZURE_BLOB_ENDPOINT") or "").strip() or None,
            **common,
        )
    else:
        db_type = (env.get("CLOUD_SQL_DB_TYPE") or "postgresql").strip().lower()
        if db_type not in ("postgresql", "sqlserver"):
            raise StartupError(f"CLOUD_SQL_DB_TYPE must be postgresql or sqlserver, got {db_type!r}.")
        password_env = "CLOUD_SQL_PASSWORD" if env.get("CLOUD_SQL_PASSWORD") else None
        register_secret(env.get("CLOUD_SQL_PASSWORD"))
        if db_type == "sqlserver" and not password_env:
            raise StartupError(
                "Cloud SQL for SQL Server has no IAM database authentication: set CLOUD_SQL_PASSWORD for a built-in user."
            )
        ip_type = (env.get("CLOUD_SQL_IP_TYPE") or "PUBLIC").strip().upper()
        if ip_type not in ("PUBLIC", "PRIVATE", "PSC"):
            raise StartupError(f"CLOUD_SQL_IP_TYPE must be PUBLIC, PRIVATE or PSC, got {ip_type!r}.")
        name = env["CLOUD_SQL_CONNECTION_NAME"].strip()
        if name.count(":") not in (2, 3):
            raise StartupError(f"CLOUD_SQL_CONNECTION_NAME must look like PROJECT:REGION:INSTANCE, got {name!r}.")
        cloud = CloudSettings(
            "gcp",
            db_type,
            None,
            None,
            env["CLOUD_SQL_DATABASE"].strip(),
            env["CLOUD_SQL_USERNAME"].strip(),
            name.split(":")[-2],
            connection_name=name,
            ip_type=ip_type,
            static_password_env=password_env,
            **common,
        )
    data_dir_raw = env.get("CONNECT_CONTENT_DATA_DIR")
    data_dir = Path(data_dir_raw).resolve() if data_dir_raw else None
    state_dir = data_dir / "mlflowctl" if data_dir else None
    if state_dir:
        state_dir.mkdir(parents=True, exist_ok=True)
    return StorageConfig(
        mode=mode,
        backend_store_uri="",
        artifacts_destination=destination,
        data_dir=data_dir,
        state_dir=state_dir,
        cloud=cloud,
    )


# What replication does unless MLFLOWCTL_REPLICA_* says otherwise.
REPLICA_INTERVAL = 1.0
REPLICA_SNAPSHOT_INTERVAL = 24 * 3600.0
REPLICA_RETENTION = 7 * 86400.0
# Past this much WAL while the replica does not answer, the replicator stops pinning (the server's WAL may shrink
# again) and starts a new generation once the replica answers.
REPLICA_MAX_WAL_BYTES = 512 << 20
# What restores that began a while ago may still read is deleted only this long after it stopped being needed.
REPLICA_DELETE_GRACE = 600.0


def parse_duration(text: str | None, default: float) -> float:
    """'7d', '12h', '30m', '45s' or a number of seconds."""
    if not text:
        return default
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (for example 7d, 12h, 30m or 45s)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_size(text: str | None, default: int) -> int:
    """'512MiB', '2GiB' or a number of bytes."""
    if not text:
        return default
    match = re.fullmatch(r"\s*(\d+)\s*(KiB|MiB|GiB)?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a size (for example 512MiB or 2GiB)")
    return int(match.group(1)) << {None: 0, "KiB": 10, "MiB": 20, "GiB": 30}[match.group(2)]


@dataclass(frozen=True)
class ReplicaSettings:
    """MLFLOWCTL_REPLICA_URL and the MLFLOWCTL_REPLICA_* that tune it. `invalid` says why a value was refused (the
    service then reports itself refused, with the defaults in place, rather than failing the server's start)."""

    url: str
    interval: float = REPLICA_INTERVAL
    snapshot_interval: float = REPLICA_SNAPSHOT_INTERVAL
    retention: float = REPLICA_RETENTION
    max_wal_bytes: int = REPLICA_MAX_WAL_BYTES
    delete_grace: float = REPLICA_DELETE_GRACE
    invalid: str | None = None

    def replicator_options(self) -> dict[str, float]:
        return {
            "retention": self.retention,
            "snapshot_interval": self.snapshot_interval,
            "max_wal_bytes": self.max_wal_bytes,
            "delete_grace": self.delete_grace,
        }


def load_replica_settings(env: Mapping[str, str]) -> ReplicaSettings | None:
    """None when MLFLOWCTL_REPLICA_URL is not set: the extension does not replicate."""
    url = env.get("MLFLOWCTL_REPLICA_URL")
    if not url:
        return None
    try:
        return ReplicaSettings(
            url=url,
            interval=parse_duration(env.get("MLFLOWCTL_REPLICA_INTERVAL"), REPLICA_INTERVAL),
            snapshot_interval=parse_duration(env.get("MLFLOWCTL_REPLICA_SNAPSHOT_INTERVAL"), REPLICA_SNAPSHOT_INTERVAL),
            retention=parse_duration(env.get("MLFLOWCTL_REPLICA_RETENTION"), REPLICA_RETENTION),
            max_wal_bytes=parse_size(env.get("MLFLOWCTL_REPLICA_MAX_WAL"), REPLICA_MAX_WAL_BYTES),
            delete_grace=parse_duration(env.get("MLFLOWCTL_REPLICA_DELETE_GRACE"), REPLICA_DELETE_GRACE),
        )
    except ValueError as exc:
        return ReplicaSettings(url=url, invalid=f"MLFLOWCTL_REPLICA_*: {exc}")


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}" if parts.scheme else url


def connect_public_url(env: Mapping[str, str]) -> str | None:
    """The public Connect URL the content is served under, if Connect told us."""
    server = (env.get("CONNECT_SERVER") or "").strip()
    return server or None


def read_env() -> dict[str, str]:
    return dict(os.environ)


RETENTION_KEYS = ("deleted", "traces", "orphans", "every")
RETENTION_EVERY = 24 * 3600.0


@dataclass(frozen=True)
class RetentionSettings:
    """MLFLOWCTL_RETENTION, e.g. `deleted=30d,traces=90d`: purge what was deleted longer ago than `deleted`, traces
    older than `traces`, and (with `orphans=GRACE`) files no row refers to that have not changed for GRACE, once
    every `every` (default 24h). `invalid` says why the value was refused (retention then stays off, and the status
    says so)."""

    text: str
    deleted: float | None = None
    traces: float | None = None
    orphans: float | None = None
    every: float = RETENTION_EVERY
    invalid: str | None = None


def load_retention_settings(env: Mapping[str, str]) -> RetentionSettings | None:
    """None when MLFLOWCTL_RETENTION is not set: nothing is purged by itself."""
    text = (env.get("MLFLOWCTL_RETENTION") or "").strip()
    if not text:
        return None
    values: dict[str, float] = {}
    try:
        for part in text.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or key not in RETENTION_KEYS:
                raise ValueError(f"{part.strip()!r} is not one of {', '.join(k + '=DURATION' for k in RETENTION_KEYS)}")
            values[key] = parse_duration(value, 0)
        if not any(key in values for key in ("deleted", "traces", "orphans")):
            raise ValueError("name at least one of deleted=, traces= or orphans=")
    except ValueError as exc:
        return RetentionSettings(text=text, invalid=f"MLFLOWCTL_RETENTION: {exc}")
    return RetentionSettings(
        text=text,
        deleted=values.get("deleted"),
        traces=values.get("traces"),
        orphans=values.get("orphans"),
        every=values.get("every", RETENTION_EVERY),
    )
