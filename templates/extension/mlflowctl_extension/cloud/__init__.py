"""Turns a cloud StorageConfig into a working MLflow setup: credentials that renew themselves, a database
URL without any secret in it plus a per-connection token hook, and artifact-store clients that use the
same credentials.

Why a `do_connect` hook: MLflow builds its own SQLAlchemy engine from a URL, and a password in a URL is
fixed for the engine's life. SQLAlchemy's documented way to give every new DBAPI connection a fresh token
is a DialectEvents.do_connect listener that writes the token into the connect parameters. The listener is process-wide and matches on host and user, so MLflow's engines and ours share it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import quote, urlencode

from ..connect_oauth import RefreshingCredential
from ..logs import log_event
from ..settings import CloudSettings, StartupError, StorageConfig

RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
AZURE_POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
AZURE_SQL_SCOPE = "https://database.windows.net/.default"
AZURE_STORAGE_SCOPE = "https://storage.azure.com/.default"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# RDS tokens live 15 minutes and Entra tokens about an hour, but both are checked only at login. Recycling
# pooled connections after 10 minutes keeps every connection young without a login per request.
DEFAULT_POOL_RECYCLE_SECONDS = "600"


@dataclass
class CloudRuntime:
    storage: StorageConfig
    credentials: list[RefreshingCredential[Any]] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        """For the ops endpoint: where credentials come from and when they next expire, never values."""
        cloud = self.storage.cloud
        return {
            "credentialsSource": cloud.credentials if cloud else None,
            "credentials": [
                {"name": c.name, "expiresAt": _iso(c.expires_at) if c.expires_at else None, "renewals": c.renewals}
                for c in self.credentials
            ],
        }


def activate(storage: StorageConfig, env: Mapping[str, str]) -> CloudRuntime:
    """Obtains the first credentials (so that a broken setup fails at startup), installs the DB token
    hook and the artifact clients, and returns the storage config with its backend URL filled in.

    @raises StartupError (CredentialError) naming what is missing or refused.
    """
    cloud = storage.cloud
    assert cloud is not None
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE", DEFAULT_POOL_RECYCLE_SECONDS)
    # Each provider in its own module, imported on use: a bundle of one mode needs only that cloud's SDKs.
    provider = importlib.import_module(f".{cloud.provider}", __name__)
    activator = getattr(provider, f"_activate_{cloud.provider}")
    try:
        runtime = activator(storage, cloud, env)
    except StartupError:
        raise
    except Exception as exc:  # an SDK error (no region, bad config): still a clear, logged refusal
        raise StartupError(f"Setting up storage mode {cloud.provider} failed: {type(exc).__name__}: {exc}") from None
    log_event(
        "startup.credentials",
        "cloud credentials ready",
        mode=storage.mode,
        source=cloud.credentials,
        credentials=[c.name for c in runtime.credentials],
    )
    return runtime


def _one_audience(cloud: CloudSettings) -> str | None:
    """AWS and GCP use one credential for the database and the artifacts."""
    if cloud.db_audience and cloud.artifacts_audience and cloud.db_audience != cloud.artifacts_audience:
        raise StartupError(
            f"Storage mode {cloud.provider} uses one integration for the database and the artifacts, but "
            "MLFLOWCTL_DB_OAUTH_INTEGRATION and MLFLOWCTL_ARTIFACTS_OAUTH_INTEGRATION differ; set MLFLOWCTL_OAUTH_INTEGRATION only."
        )
    return cloud.db_audience or cloud.artifacts_audience


# --- database URL and token hook -------------------------------------------------------------------


def postgres_url(cloud: CloudSettings, query: Mapping[str, str], driver: str = "postgresql") -> str:
    """A URL with no password: the hook supplies one per connection."""
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{driver}://{quote(cloud.username, safe='')}@{cloud.host}:{cloud.port}/{quote(cloud.database, safe='')}{suffix}"


def install_connect_hook(
    matches: Callable[[Any, dict[str, Any]], bool], prepare: Callable[[dict[str, Any]], Any]
) -> None:
    """Registers a process-wide do_connect listener. `prepare` edits the connect parameters in place and
    may return a ready DBAPI connection (the Cloud SQL connector does), which SQLAlchemy then uses."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        if not matches(dialect, cparams):
            return None
        return prepare(cparams)

    event.listen(Engine, "do_connect", on_connect)


def _password_hook(cloud: CloudSettings, token: Callable[[], str]) -> None:
    def prepare(cparams: dict[str, Any]) -> None:
        cparams["password"] = token()

    install_connect_hook(lambda _d, p: p.get("host") == cloud.host and p.get("user") == cloud.username, prepare)


# --- AWS: RDS IAM tokens and S3, both from one refreshing credentials object ---------------------------


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
