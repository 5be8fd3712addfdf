"""Turns a cloud StorageConfig into a working MLflow setup: credentials that renew themselves, a database
URL without any secret in it plus a per-connection token hook, and artifact-store clients that use the
same credentials.

Why a `do_connect` hook: MLflow builds its own SQLAlchemy engine from a URL, and a password in a URL is
fixed for the engine's life. SQLAlchemy's documented way to give every new DBAPI connection a fresh token
is a DialectEvents.do_connect listener that writes the token into the connect parameters (cloud-auth.md
§1.4). The listener is process-wide and matches on host and user, so MLflow's engines and ours share it.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote, urlencode
from urllib.request import urlopen

from .connect_oauth import (
    ConnectTokenExchange,
    CredentialError,
    Issued,
    RefreshingCredential,
    access_token_source,
    aws_credentials_source,
    jwt_claims,
    refresh_margin,
)
from .logs import log_event, register_secret
from .settings import CloudSettings, StartupError, StorageConfig

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
                {"name": c.name, "expiresAt": _iso(c.expires_at) if c.expires_at else None, "renewals": c.renewals} for c in self.credentials
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
    activator = {"aws": _activate_aws, "azure": _activate_azure, "gcp": _activate_gcp}[cloud.provider]
    try:
        runtime = activator(storage, cloud, env)
    except StartupError:
        raise
    except Exception as exc:  # an SDK error (no region, bad config): still a clear, logged refusal
        raise StartupError(f"Setting up storage mode {cloud.provider} failed: {type(exc).__name__}: {exc}") from None
    log_event(
        "startup.credentials", "cloud credentials ready", mode=storage.mode, source=cloud.credentials,
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


def install_connect_hook(matches: Callable[[Any, dict[str, Any]], bool], prepare: Callable[[dict[str, Any]], Any]) -> None:
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

def _activate_aws(storage: StorageConfig, cloud: CloudSettings, env: Mapping[str, str]) -> CloudRuntime:
    runtime = CloudRuntime(storage)
    source = None
    if cloud.credentials == "connect":  # first, so that a missing integration is the error an operator sees
        source = aws_credentials_source(ConnectTokenExchange(env), _one_audience(cloud))
        source.get()
        runtime.credentials.append(source)
    try:
        import boto3
        import botocore.session
    except ImportError:
        raise StartupError("Storage mode aws needs boto3, which this bundle lacks; re-render it with `mlflowctl init --storage aws`.") from None
    session = botocore.session.get_session()
    if source is not None:
        session.get_component("credential_provider").insert_before("env", _ConnectAwsProvider(source))
    # MLflow's S3 repository calls boto3.client(), which uses this default session.
    boto3.setup_default_session(botocore_session=session, region_name=cloud.region)
    if session.get_credentials() is None:  # ambient mode and nothing in the chain
        raise CredentialError("MLFLOWCTL_CREDENTIALS=ambient, but the AWS SDK found no credentials (environment, config files, instance role).")
    rds = boto3.client("rds", region_name=cloud.region)

    def token() -> str:
        # Not registered with the redactor: one per connection would crowd out the credentials themselves,
        # and it only travels in the driver's password field (the signing secret is registered).
        return rds.generate_db_auth_token(DBHostname=cloud.host, Port=cloud.port, DBUsername=cloud.username, Region=cloud.region)

    _password_hook(cloud, token)
    ca_bundle = cloud.ca_bundle or _rds_ca_bundle(storage)
    # IAM authentication needs TLS; verify-full checks the RDS CA and the host name.
    uri = postgres_url(cloud, {"sslmode": "verify-full", "sslrootcert": ca_bundle})
    runtime.storage = replace(storage, backend_store_uri=uri)
    return runtime


class _ConnectAwsProvider:
    """A botocore credential provider whose credentials are the Connect-issued ones; botocore asks for
    them again as expiry nears, and the shared RefreshingCredential decides whether to exchange."""

    METHOD = "mlflowctl-connect-oauth"
    CANONICAL_NAME = "MlflowctlConnectOAuth"

    def __init__(self, source: RefreshingCredential[dict[str, str]]) -> None:
        self._source = source

    def _metadata(self) -> dict[str, str]:
        issued = self._source.get_issued()
        return {**issued.value, "expiry_time": _iso(issued.expires_at)}

    def load(self) -> Any:
        from botocore.credentials import RefreshableCredentials

        metadata = self._metadata()
        # botocore's own windows (refresh from 15 minutes before expiry, block from 10) would call back on
        # every request for short-lived credentials; ours decide, so botocore asks only near expiry.
        lifetime = max(1.0, (self._source.expires_at or 0) - time.time())
        return RefreshableCredentials.create_from_metadata(
            metadata=metadata, refresh_using=self._metadata, method=self.METHOD,
            advisory_timeout=refresh_margin(lifetime), mandatory_timeout=refresh_margin(lifetime) / 2,
        )


def _rds_ca_bundle(storage: StorageConfig) -> str:
    # Without a data dir, a fresh private directory: a shared, predictable path would let another local
    # user plant the trust anchor.
    target_dir = storage.state_dir or Path(tempfile.mkdtemp(prefix="mlflowctl-rds-"))
    target = target_dir / "rds-global-bundle.pem"
    if target.exists():
        return str(target)
    try:
        with urlopen(RDS_CA_BUNDLE_URL, timeout=15) as response:
            pem = response.read()
        if b"BEGIN CERTIFICATE" not in pem:
            raise OSError("not a PEM bundle")
        handle, partial = tempfile.mkstemp(dir=target_dir, prefix=".rds-bundle-")
        with os.fdopen(handle, "wb") as out:
            out.write(pem)
        os.replace(partial, target)
    except OSError as exc:
        raise StartupError(
            f"RDS needs TLS with the RDS CA bundle, and downloading {RDS_CA_BUNDLE_URL} failed ({exc}). "
            "Put global-bundle.pem in the bundle or on the server and set RDS_CA_BUNDLE to its path."
        ) from None
    return str(target)


# --- Azure: Entra ID tokens for PostgreSQL / SQL Server and Blob ------------------------------------

def _entra_source(cloud: CloudSettings, env: Mapping[str, str], name: str, scope: str, audience: str | None) -> RefreshingCredential[str]:
    if cloud.credentials == "connect":
        return access_token_source(ConnectTokenExchange(env), name, audience, scope)
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise StartupError("MLFLOWCTL_CREDENTIALS=ambient on Azure needs azure-identity; re-render with `mlflowctl init --storage azure`.") from None
    ambient = DefaultAzureCredential()

    def fetch() -> Issued[str]:
        try:
            token = ambient.get_token(scope)
        except Exception as exc:  # azure-identity raises its own hierarchy; the message holds no secret
            raise CredentialError(f"DefaultAzureCredential could not get a token for {scope}: {type(exc).__name__}.") from None
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
        query = {"sslmode": cloud.sslmode, "sslrootcert": cloud.ca_bundle or "system"} if cloud.sslmode.startswith("verify") else {"sslmode": cloud.sslmode}
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
        raise StartupError("SQL Server storage needs python-tds and sqlalchemy-pytds; re-render with `mlflowctl init --storage azure`.") from None
    cafile = cloud.ca_bundle or certifi.where()

    def prepare(cparams: dict[str, Any]) -> None:
        cparams.pop("password", None)
        cparams.pop("user", None)
        cparams["access_token_callable"] = token.get
        cparams["cafile"] = cafile
        cparams["validate_host"] = True

    # sqlalchemy-pytds passes the host as `dsn`.
    install_connect_hook(lambda d, p: d.name == "mssql" and cloud.host in (p.get("dsn"), p.get("server"), p.get("host")), prepare)
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
        raise StartupError("Storage mode azure needs azure-storage-blob; re-render with `mlflowctl init --storage azure`.") from None
    credential = _TokenCredential(token)

    def factory(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
        _, account, _, suffix = AzureBlobArtifactRepository.parse_wasbs_uri(artifact_uri)
        client = BlobServiceClient(account_url=cloud.blob_endpoint or f"https://{account}.{suffix}", credential=credential)
        return AzureBlobArtifactRepository(artifact_uri, client=client)

    _artifact_repository_registry.register("wasbs", factory)


# --- GCP: Cloud SQL through the Python connector, and GCS -------------------------------------------

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
        raise StartupError("Storage mode gcp needs cloud-sql-python-connector; re-render with `mlflowctl init --storage gcp`.") from None
    runtime = CloudRuntime(storage)
    credentials = None
    if cloud.credentials == "connect":
        # The connector treats connection info that expires within 4 minutes as stale: renew 5 minutes ahead.
        source = access_token_source(ConnectTokenExchange(env), "google", _one_audience(cloud), GOOGLE_SCOPE, min_margin=300)
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

    install_connect_hook(lambda d, p: d.driver == driver and p.get("user") == cloud.username and p.get("database") == cloud.database and not p.get("host"), prepare)
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
        raise StartupError("Storage mode gcp needs google-cloud-storage; re-render with `mlflowctl init --storage gcp`.") from None

    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or (cloud.connection_name or "").rsplit(":", 2)[0]

    def factory(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
        return GCSArtifactRepository(artifact_uri, client=gcs.Client(project=project, credentials=credentials))

    _artifact_repository_registry.register("gs", factory)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
