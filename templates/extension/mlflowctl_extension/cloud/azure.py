"""Azure: Entra ID tokens for PostgreSQL, SQL Server and Blob storage."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Mapping
from urllib.parse import quote

from ..connect_oauth import (
    ConnectTokenExchange,
    CredentialError,
    Issued,
    RefreshingCredential,
    access_token_source,
    jwt_claims,
)
from ..logs import register_secret
from ..settings import CloudSettings, StartupError, StorageConfig
from . import (
    AZURE_POSTGRES_SCOPE,
    AZURE_SQL_SCOPE,
    AZURE_STORAGE_SCOPE,
    CloudRuntime,
    _password_hook,
    install_connect_hook,
    postgres_url,
)


def _entra_source(
    cloud: CloudSettings, env: Mapping[str, str], name: str, scope: str, audience: str | None
) -> RefreshingCredential[str]:
    if cloud.credentials == "connect":
        return access_token_source(ConnectTokenExchange(env), name, audience, scope)
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise StartupError(
            "MLFLOWCTL_CREDENTIALS=ambient on Azure needs azure-identity; re-render with `mlflowctl init --storage azure`."
        ) from None
    ambient = DefaultAzureCredential()

    def fetch() -> Issued[str]:
        try:
            token = ambient.get_token(scope)
        except Exception as exc:  # azure-identity raises its own hierarchy; the message holds no secret
            raise CredentialError(
                f"DefaultAzureCredential could not get a token for {scope}: {type(exc).__name__}."
            ) from None
        register_secret(token.token, rotating=True)
        return Issued(token.token, float(token.expires_on))

    return RefreshingCredential(name, fetch)


def _check_audience(token: str, scope: str, what: str) -> None:
    """Connect may ignore the requested scope and return the integration's own: a token for another
    resource would fail later with an opaque login error, so say it now."""
    audience = str(jwt_claims(token).get("aud", ""))
    resource = scope.removesuffix("/.default")
    if audience and audience.rstrip("/") != resource.rstrip("/"):
        raise StartupError(
            f"The integration returned a token for {audience}, but {what} needs {resource}. Configure the integration's "
            "scopes, or associate one integration per resource (MLFLOWCTL_DB_OAUTH_INTEGRATION, MLFLOWCTL_ARTIFACTS_OAUTH_INTEGRATION)."
        )


def _activate_azure(storage: StorageConfig, cloud: CloudSettings, env: Mapping[str, str]) -> CloudRuntime:
    runtime = CloudRuntime(storage)
    db_scope = AZURE_POSTGRES_SCOPE if cloud.db_type == "postgresql" else AZURE_SQL_SCOPE
    db_token = _entra_source(cloud, env, f"entra-{cloud.db_type}", db_scope, cloud.db_audience)
    _check_audience(db_token.get(), db_scope, "the database")
    runtime.credentials.append(db_token)
    if cloud.db_type == "postgresql":
        _password_hook(cloud, db_token.get)
        # verify-full always: the password is a bearer token worth an hour. Without a bundle, libpq >= 16
        # checks against the system store (Azure's roots are public CAs).
        query = (
            {"sslmode": cloud.sslmode, "sslrootcert": cloud.ca_bundle or "system"}
            if cloud.sslmode.startswith("verify")
            else {"sslmode": cloud.sslmode}
        )
        uri = postgres_url(cloud, query)
    else:
        uri = _sqlserver_token_hook(cloud, db_token)
    if not os.environ.get("AZURE_STORAGE_CONNECTION_STRING") and not os.environ.get("AZURE_STORAGE_ACCESS_KEY"):
        blob_token = _entra_source(cloud, env, "entra-storage", AZURE_STORAGE_SCOPE, cloud.artifacts_audience)
        _check_audience(blob_token.get(), AZURE_STORAGE_SCOPE, "Blob storage")
        runtime.credentials.append(blob_token)
        _register_wasbs(cloud, blob_token)
    runtime.storage = replace(storage, backend_store_uri=uri)
    return runtime


def _sqlserver_token_hook(cloud: CloudSettings, token: RefreshingCredential[str]) -> str:
    """python-tds (>= 1.17) takes an access-token callable, called once per login; TLS needs a CA file,
    so certifi's bundle is the default (UNTESTED against a real SQL Server: none can run here)."""
    try:
        import certifi
        import pytds  # noqa: F401
    except ImportError:
        raise StartupError(
            "SQL Server storage needs python-tds and sqlalchemy-pytds; re-render with `mlflowctl init --storage azure`."
        ) from None
    cafile = cloud.ca_bundle or certifi.where()

    def prepare(cparams: dict[str, Any]) -> None:
        cparams.pop("password", None)
        cparams.pop("user", None)
        cparams["access_token_callable"] = token.get
        cparams["cafile"] = cafile
        cparams["validate_host"] = True

    # sqlalchemy-pytds passes the host as `dsn`.
    install_connect_hook(
        lambda d, p: d.name == "mssql" and cloud.host in (p.get("dsn"), p.get("server"), p.get("host")), prepare
    )
    return f"mssql+pytds://{quote(cloud.username, safe='')}@{cloud.host}:{cloud.port}/{quote(cloud.database, safe='')}"


class _TokenCredential:
    """The azure-core TokenCredential protocol over a RefreshingCredential (one token per scope)."""

    def __init__(self, source: RefreshingCredential[str]) -> None:
        self._source = source

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        issued = self._source.get_issued()
        return AccessToken(issued.value, int(issued.expires_at))


def _register_wasbs(cloud: CloudSettings, token: RefreshingCredential[str]) -> None:
    try:
        from azure.storage.blob import BlobServiceClient
        from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
        from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository
    except ImportError:
        raise StartupError(
            "Storage mode azure needs azure-storage-blob; re-render with `mlflowctl init --storage azure`."
        ) from None
    credential = _TokenCredential(token)

    def factory(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
        _, account, _, suffix = AzureBlobArtifactRepository.parse_wasbs_uri(artifact_uri)
        client = BlobServiceClient(
            account_url=cloud.blob_endpoint or f"https://{account}.{suffix}", credential=credential
        )
        return AzureBlobArtifactRepository(artifact_uri, client=client)

    _artifact_repository_registry.register("wasbs", factory)


# --- GCP: Cloud SQL through the Python connector, and GCS -------------------------------------------
