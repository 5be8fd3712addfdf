"""GCP: Cloud SQL through its connector (IAM login) and GCS, with Google credentials."""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import replace
from typing import Any, Mapping
from urllib.parse import quote

from ..connect_oauth import ConnectTokenExchange, CredentialError, RefreshingCredential, access_token_source
from ..settings import CloudSettings, StartupError, StorageConfig
from . import GOOGLE_SCOPE, CloudRuntime, _one_audience, install_connect_hook


def _google_credentials(source: RefreshingCredential[str]) -> Any:
    import google.auth.credentials

    class ConnectGoogleCredentials(google.auth.credentials.Credentials):
        """google-auth credentials whose refresh is the shared RefreshingCredential: google-auth's own
        refresh_handler path refuses tokens that live under its 3m45s threshold."""

        def refresh(self, request: Any) -> None:
            issued = source.get_issued()
            self.token = issued.value
            # google-auth compares naive UTC datetimes.
            self.expiry = dt.datetime.fromtimestamp(issued.expires_at, dt.timezone.utc).replace(tzinfo=None)

    return ConnectGoogleCredentials()


def _activate_gcp(storage: StorageConfig, cloud: CloudSettings, env: Mapping[str, str]) -> CloudRuntime:
    try:
        from google.cloud.sql.connector import Connector, IPTypes
    except ImportError:
        raise StartupError(
            "Storage mode gcp needs cloud-sql-python-connector; re-render with `mlflowctl init --storage gcp`."
        ) from None
    runtime = CloudRuntime(storage)
    credentials = None
    if cloud.credentials == "connect":
        # The connector treats connection info that expires within 4 minutes as stale: renew 5 minutes ahead.
        source = access_token_source(
            ConnectTokenExchange(env), "google", _one_audience(cloud), GOOGLE_SCOPE, min_margin=300
        )
        source.get()
        runtime.credentials.append(source)
        credentials = _google_credentials(source)
    password = env.get(cloud.static_password_env) if cloud.static_password_env else None
    connector_args: dict[str, Any] = {"ip_type": getattr(IPTypes, cloud.ip_type), "refresh_strategy": "lazy"}
    if credentials is not None:
        connector_args["credentials"] = credentials
    if env.get("MLFLOWCTL_CLOUD_SQL_ADMIN_ENDPOINT"):  # private or PSC API endpoints
        connector_args["sqladmin_api_endpoint"] = env["MLFLOWCTL_CLOUD_SQL_ADMIN_ENDPOINT"]
    holder: dict[str, Any] = {}
    lock = threading.Lock()

    def connector() -> Any:
        # Created lazily in the process that uses it: gunicorn forks workers after import.
        with lock:
            if holder.get("pid") != os.getpid():
                holder["connector"] = Connector(**connector_args)
                holder["pid"] = os.getpid()
            return holder["connector"]

    driver = "pg8000" if cloud.db_type == "postgresql" else "pytds"

    def prepare(cparams: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {"user": cloud.username, "db": cloud.database}
        if password:
            kwargs["password"] = password
        else:
            kwargs["enable_iam_auth"] = True
        try:
            return connector().connect(cloud.connection_name, driver, **kwargs)
        except Exception as exc:  # the connector raises aiohttp/google-auth errors, not DBAPI ones
            if isinstance(exc, StartupError) or type(exc).__module__.startswith(("pg8000", "pytds")):
                raise
            raise CredentialError(
                f"Cannot reach the backend store through the Cloud SQL connector (instance {cloud.connection_name}): "
                f"{type(exc).__name__}: {exc}. Check that the identity has roles/cloudsql.client (and cloudsql.instanceUser "
                "for IAM login), and that CLOUD_SQL_IP_TYPE matches how this server reaches the instance."
            ) from None

    install_connect_hook(
        lambda d, p: d.driver == driver
        and p.get("user") == cloud.username
        and p.get("database") == cloud.database
        and not p.get("host"),
        prepare,
    )
    scheme = "postgresql+pg8000" if driver == "pg8000" else "mssql+pytds"
    uri = f"{scheme}://{quote(cloud.username, safe='')}@/{quote(cloud.database, safe='')}"
    if credentials is not None:
        _register_gs(cloud, credentials)
    runtime.storage = replace(storage, backend_store_uri=uri)
    return runtime


def _register_gs(cloud: CloudSettings, credentials: Any) -> None:
    try:
        from google.cloud import storage as gcs
        from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
        from mlflow.store.artifact.gcs_artifact_repo import GCSArtifactRepository
    except ImportError:
        raise StartupError(
            "Storage mode gcp needs google-cloud-storage; re-render with `mlflowctl init --storage gcp`."
        ) from None

    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or (cloud.connection_name or "").rsplit(":", 2)[0]

    def factory(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
        return GCSArtifactRepository(artifact_uri, client=gcs.Client(project=project, credentials=credentials))

    _artifact_repository_registry.register("gs", factory)
