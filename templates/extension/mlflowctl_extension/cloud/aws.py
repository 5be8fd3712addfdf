"""AWS: RDS IAM tokens for PostgreSQL and S3, with credentials from Connect's OAuth integration or the default chain."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping
from urllib.request import urlopen

from ..connect_oauth import (
    ConnectTokenExchange,
    CredentialError,
    RefreshingCredential,
    aws_credentials_source,
    refresh_margin,
)
from ..settings import CloudSettings, StartupError, StorageConfig
from . import RDS_CA_BUNDLE_URL, CloudRuntime, _iso, _one_audience, _password_hook, postgres_url


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
        raise StartupError(
            "Storage mode aws needs boto3, which this bundle lacks; re-render it with `mlflowctl init --storage aws`."
        ) from None
    session = botocore.session.get_session()
    if source is not None:
        session.get_component("credential_provider").insert_before("env", _ConnectAwsProvider(source))
    # MLflow's S3 repository calls boto3.client(), which uses this default session.
    boto3.setup_default_session(botocore_session=session, region_name=cloud.region)
    if session.get_credentials() is None:  # ambient mode and nothing in the chain
        raise CredentialError(
            "MLFLOWCTL_CREDENTIALS=ambient, but the AWS SDK found no credentials (environment, config files, instance role)."
        )
    rds = boto3.client("rds", region_name=cloud.region)

    def token() -> str:
        # Not registered with the redactor: one per connection would crowd out the credentials themselves,
        # and it only travels in the driver's password field (the signing secret is registered).
        return rds.generate_db_auth_token(
            DBHostname=cloud.host, Port=cloud.port, DBUsername=cloud.username, Region=cloud.region
        )

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
            metadata=metadata,
            refresh_using=self._metadata,
            method=self.METHOD,
            advisory_timeout=refresh_margin(lifetime),
            mandatory_timeout=refresh_margin(lifetime) / 2,
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
