"""The Connect token exchange and the refreshing credential, against a real local HTTP server that answers
as Connect does, and the startup refusals of the cloud modes."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
from conftest import API_KEY, SESSION, base_env, import_app
from mlflowctl_extension.connect_oauth import (
    AWS_CREDENTIALS,
    ConnectTokenExchange,
    CredentialError,
    Issued,
    RefreshingCredential,
    access_token_expiry,
    access_token_source,
    aws_credentials_source,
    jwt_expiry,
    parse_aws_credentials,
)
from mlflowctl_extension.logs import redact
from mlflowctl_extension.settings import StartupError, load_storage_config


def aws_token(expiration: str) -> str:
    raw = {
        "accessKeyId": "ASIAEXAMPLE",
        "secretAccessKey": "secret-value-1234",
        "sessionToken": "session-value-1234",
        "expiration": expiration,
    }
    return base64.b64encode(json.dumps(raw).encode()).decode()


def test_exchange_sends_the_documented_form_with_key_auth(exchange_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(" file-session-token \n")
    exchange = ConnectTokenExchange(exchange_server.env(CONNECT_CONTENT_SESSION_TOKEN_FILE=str(token_file)))
    exchange.exchange(AWS_CREDENTIALS, audience="integration-guid", scope="s/.default")
    sent = exchange_server.requests[0]
    assert sent["path"] == "/__api__/v1/oauth/integrations/credentials"
    assert sent["auth"] == f"Key {API_KEY}"
    assert sent["type"] == "application/x-www-form-urlencoded"
    assert sent["form"]["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    assert sent["form"]["subject_token_type"] == ["urn:posit:connect:content-session-token"]
    assert sent["form"]["subject_token"] == ["file-session-token"], "the _FILE variant wins and is stripped"
    assert sent["form"]["audience"] == ["integration-guid"]
    assert sent["form"]["requested_token_type"] == [AWS_CREDENTIALS]


@pytest.mark.parametrize(
    "status,body,message",
    [
        (
            400,
            {"code": 212, "error": "No integration"},
            r"No OAuth integration is associated with this content \(Connect error 212",
        ),
        (
            400,
            {"code": 257, "error": "Several"},
            r"Several OAuth integrations are associated .*Connect error 257.*MLFLOWCTL_OAUTH_INTEGRATION",
        ),
        (
            401,
            {"code": 236, "error": "Invalid session token"},
            r"did not accept this content's session token \(Connect error 236",
        ),
        (401, {"code": 30, "error": "Invalid login."}, r"Connect refused the token exchange \(HTTP 401"),
        (500, {}, r"token exchange failed \(HTTP 500"),
        (200, {"token_type": "Bearer"}, r"without an access_token"),
    ],
)
def test_exchange_failures_are_named(exchange_server, status, body, message):
    exchange_server.answer = (status, body)
    with pytest.raises(CredentialError, match=message) as caught:
        ConnectTokenExchange(exchange_server.env()).exchange(AWS_CREDENTIALS)
    assert SESSION not in str(caught.value) and API_KEY not in str(caught.value)


def test_missing_session_token_and_connect_variables_are_named(exchange_server):
    with pytest.raises(CredentialError, match="No content session token"):
        ConnectTokenExchange({"CONNECT_SERVER": exchange_server.url, "CONNECT_API_KEY": API_KEY}).exchange(
            AWS_CREDENTIALS
        )
    with pytest.raises(CredentialError, match="CONNECT_API_KEY"):
        ConnectTokenExchange({"CONNECT_SERVER": exchange_server.url})
    with pytest.raises(CredentialError, match="Cannot reach Connect"):
        ConnectTokenExchange(
            {
                "CONNECT_SERVER": "http://127.0.0.1:9/",
                "CONNECT_API_KEY": API_KEY,
                "CONNECT_CONTENT_SESSION_TOKEN": SESSION,
            },
            timeout=2,
        ).exchange(AWS_CREDENTIALS)


def test_aws_credentials_are_parsed_and_registered_as_secrets(exchange_server):
    exchange_server.answer = (
        200,
        {"access_token": aws_token("2030-01-02T03:04:05Z"), "issued_token_type": AWS_CREDENTIALS, "token_type": "aws"},
    )
    source = aws_credentials_source(ConnectTokenExchange(exchange_server.env()), audience=None)
    creds = source.get()
    assert creds == {"access_key": "ASIAEXAMPLE", "secret_key": "secret-value-1234", "token": "session-value-1234"}
    assert source.expires_at == 1893553445.0
    assert redact("secret-value-1234 and session-value-1234") == "*** and ***"
    with pytest.raises(CredentialError, match="base64 JSON"):
        parse_aws_credentials("not-base64-json")


def test_expiry_comes_from_expires_in_then_the_jwt_exp_claim():
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 2000000000}).encode()).decode().rstrip("=")
    jwt = f"eyJhbGciOiJIUzI1NiJ9.{claims}.sig"
    assert jwt_expiry(jwt) == 2000000000.0
    assert access_token_expiry({"access_token": jwt, "expires_in": 60}, 1000.0) == 1060.0
    assert access_token_expiry({"access_token": jwt}, 1000.0) == 2000000000.0
    assert access_token_expiry({"access_token": "opaque"}, 1000.0) == 1600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gated_source():
    """A credential living 30 s whose fetch waits for `gate`, so that a test can hold a renewal open."""
    clock = Clock()
    fetches: list[float] = []
    gate = threading.Event()

    def fetch() -> Issued[str]:
        gate.wait(5)
        fetches.append(clock.now)
        return Issued(f"v{len(fetches)}", clock.now + 30)

    return clock, fetches, gate, RefreshingCredential("test", fetch, clock)


def test_renews_before_expiry_once_and_valid_credentials_never_wait():
    clock, fetches, gate, source = gated_source()
    gate.set()
    assert source.get() == "v1"
    clock.now += 15  # inside the lifetime, before the margin (a third of 30 s)
    assert source.get() == "v1"
    clock.now += 6  # 9 s left: inside the margin, renew now, before expiry
    gate.clear()
    renewer = threading.Thread(target=source.get)
    renewer.start()
    while not source._lock.locked():  # the renewer is inside the (blocked) fetch
        pass
    others: list[str] = []
    threads = [threading.Thread(target=lambda: others.append(source.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2)
    assert others == ["v1"] * 8, "while the credential is valid, nobody waits for the renewal"
    gate.set()
    renewer.join()
    assert source.get() == "v2" and len(fetches) == 2, "one renewal"
    assert fetches[1] < 1000 + 30, "renewed before the first credential expired"


def test_expired_credentials_make_every_caller_wait_for_one_renewal():
    clock, fetches, gate, source = gated_source()
    gate.set()
    source.get()
    clock.now += 31  # expired (an idle process)
    gate.clear()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(source.get())) for _ in range(6)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert results == ["v2"] * 6 and len(fetches) == 2


def test_a_credential_in_its_last_moments_makes_callers_wait_for_the_renewal():
    """The login a credential is for happens a little after get() (a new database connection, a request on the
    wire): with under a tenth of its lifetime left (2 s at most), it is no longer handed out while a renewal runs."""
    clock, fetches, gate, source = gated_source()
    gate.set()
    source.get()
    clock.now += 29  # 1 s left of 30
    gate.clear()
    results: list[str] = []
    renewer = threading.Thread(target=lambda: results.append(source.get()))
    renewer.start()
    while not source._lock.locked():  # the renewer is inside the (blocked) fetch
        pass
    waiting = [threading.Thread(target=lambda: results.append(source.get())) for _ in range(4)]
    for thread in waiting:
        thread.start()
    for thread in waiting:
        thread.join(0.2)
    assert results == [], "nobody got the credential that is about to expire"
    gate.set()
    for thread in [renewer, *waiting]:
        thread.join()
    assert results == ["v2"] * 5 and len(fetches) == 2


class SlowExchange:
    """Answers like Connect's token exchange, and takes `seconds` of the test clock to do it."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def exchange(
        self, requested_token_type: str, audience: str | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        self.clock.now += self.seconds
        return {"access_token": "opaque", "expires_in": 15}


def test_a_tokens_lifetime_counts_from_when_it_was_asked_for_not_from_a_slow_answer():
    clock = Clock()
    source = access_token_source(
        SlowExchange(clock, 4.0), "azure", None, "https://ossrdbms-aad.database.windows.net/.default", clock
    )  # type: ignore[arg-type]
    assert source.get_issued().expires_at == 1000.0 + 15


def test_a_failed_renewal_keeps_a_valid_credential_backs_off_and_fails_clearly_once_expired():
    clock = Clock()
    outcomes: list[Any] = [Issued("v1", 1030.0)]
    attempts: list[float] = []

    def fetch() -> Issued[str]:
        attempts.append(clock.now)
        outcome = outcomes.pop(0) if outcomes else CredentialError("Connect's token exchange failed (HTTP 503).")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    source = RefreshingCredential("aws", fetch, clock)
    assert source.get() == "v1"
    clock.now = 1025.0  # in the margin; renewal fails, the credential is still valid
    assert source.get() == "v1"
    assert source.get() == "v1" and len(attempts) == 2, "no retry storm: the next attempt waits for the backoff"
    clock.now = 1031.0
    with pytest.raises(CredentialError, match=r"The aws credential expired and could not be renewed: .*HTTP 503"):
        source.get()
    clock.now = 1032.0
    outcomes.append(RuntimeError("boom from an SDK"))
    with pytest.raises(CredentialError, match="RuntimeError: boom from an SDK"):
        source.get()


@pytest.mark.parametrize(
    "env,message",
    [
        (
            {"RDS_ENDPOINT": "db.example"},
            "Storage mode aws needs RDS_DATABASE, RDS_USERNAME, AWS_REGION, MLFLOW_ARTIFACTS_DESTINATION",
        ),
        (
            {
                "RDS_ENDPOINT": "h",
                "RDS_DATABASE": "d",
                "RDS_USERNAME": "u",
                "AWS_REGION": "r",
                "MLFLOW_ARTIFACTS_DESTINATION": "gs://b",
            },
            r"stores artifacts in s3://",
        ),
        (
            {
                "RDS_ENDPOINT": "h",
                "RDS_DATABASE": "d",
                "RDS_USERNAME": "u",
                "AWS_REGION": "r",
                "RDS_DB_TYPE": "mysql",
                "MLFLOW_ARTIFACTS_DESTINATION": "s3://b",
            },
            "RDS PostgreSQL only",
        ),
        (
            {
                "AZURE_DATABASE_SERVER": "s",
                "AZURE_DATABASE_NAME": "d",
                "AZURE_DATABASE_USERNAME": "u",
                "AZURE_DATABASE_TYPE": "oracle",
                "MLFLOW_ARTIFACTS_DESTINATION": "wasbs://c@a.blob.core.windows.net/p",
            },
            "postgresql or sqlserver",
        ),
        (
            {
                "CLOUD_SQL_CONNECTION_NAME": "bad",
                "CLOUD_SQL_DATABASE": "d",
                "CLOUD_SQL_USERNAME": "u",
                "MLFLOW_ARTIFACTS_DESTINATION": "gs://b",
            },
            "PROJECT:REGION:INSTANCE",
        ),
        (
            {
                "CLOUD_SQL_CONNECTION_NAME": "p:r:i",
                "CLOUD_SQL_DB_TYPE": "sqlserver",
                "CLOUD_SQL_DATABASE": "d",
                "CLOUD_SQL_USERNAME": "u",
                "MLFLOW_ARTIFACTS_DESTINATION": "gs://b",
            },
            "no IAM database authentication",
        ),
    ],
)
def test_cloud_settings_name_what_is_wrong(env, message):
    with pytest.raises(StartupError, match=message):
        load_storage_config(env)


def test_cloud_settings_defaults():
    azure = load_storage_config(
        {
            "AZURE_DATABASE_SERVER": "mlflowdb",
            "AZURE_DATABASE_NAME": "mlflow",
            "AZURE_DATABASE_USERNAME": "ml@corp",
            "MLFLOW_ARTIFACTS_DESTINATION": "wasbs://c@a.blob.core.windows.net/p",
        }
    ).cloud
    assert (azure.host, azure.port, azure.db_type, azure.sslmode, azure.credentials) == (
        "mlflowdb.postgres.database.azure.com",
        5432,
        "postgresql",
        "verify-full",
        "connect",
    )
    aws = load_storage_config(
        {
            "RDS_ENDPOINT": "h",
            "RDS_DATABASE": "d",
            "RDS_USERNAME": "u",
            "AWS_REGION": "eu-west-1",
            "MLFLOW_ARTIFACTS_DESTINATION": "s3://b",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "MLFLOWCTL_OAUTH_INTEGRATION": "g",
        }
    ).cloud
    assert (aws.port, aws.credentials, aws.db_audience) == (5432, "ambient", "g"), (
        "static keys in the env mean the SDK chain"
    )


@pytest.mark.newest_mlflow_only
def test_startup_refuses_without_an_integration_and_logs_no_secret(bundle, exchange_server):
    exchange_server.answer = (400, {"code": 212, "error": "No OAuth integration is associated with this content."})
    env = base_env(
        **exchange_server.env(),
        RDS_ENDPOINT="127.0.0.1",
        RDS_DATABASE="mlflow",
        RDS_USERNAME="mlflow_iam",
        AWS_REGION="us-east-1",
        MLFLOW_ARTIFACTS_DESTINATION="s3://bucket/mlflow",
    )
    result = import_app(bundle, env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "startup.refused" in output
    assert "Connect error 212" in output, output[-2000:]
    assert SESSION not in output and API_KEY not in output
