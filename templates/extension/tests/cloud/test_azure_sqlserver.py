"""Storage mode azure with SQL Server, in the azure bundle's venv. No SQL Server can run here, so this is the contract at the driver boundary: what python-tds receives for each new connection.
UNTESTED: the FEDAUTH login itself against a real server."""

from __future__ import annotations

import pytest


def test_each_connection_gets_an_access_token_callable_tls_and_no_password(exchange_server, monkeypatch):
    import pytds
    import sqlalchemy
    from mlflowctl_extension.cloud import activate
    from mlflowctl_extension.settings import load_storage_config

    scopes: list[str] = []

    def answer():
        scopes.append(exchange_server.requests[-1]["form"].get("scope", [""])[0])
        return 200, {
            "access_token": f"entra-token-{len(scopes)}",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        }

    exchange_server.answer = answer
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")  # Blob is not under test here
    env = exchange_server.env(
        AZURE_DATABASE_SERVER="mlflow-sql",
        AZURE_DATABASE_NAME="mlflow",
        AZURE_DATABASE_USERNAME="mlflow-app",
        AZURE_DATABASE_TYPE="sqlserver",
        MLFLOW_ARTIFACTS_DESTINATION="wasbs://c@acct.blob.core.windows.net/p",
    )
    runtime = activate(load_storage_config(env), env)
    assert runtime.storage.backend_store_uri == "mssql+pytds://mlflow-app@mlflow-sql.database.windows.net:1433/mlflow"
    assert scopes == ["https://database.windows.net/.default"]

    seen: list[dict] = []

    def fake_connect(*args, **kwargs):
        seen.append(kwargs)
        raise pytds.OperationalError("stop at the driver boundary")

    monkeypatch.setattr(pytds, "connect", fake_connect)
    engine = sqlalchemy.create_engine(runtime.storage.backend_store_uri)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    params = seen[0]
    assert params["access_token_callable"]() == "entra-token-1"
    assert "password" not in params and "user" not in params
    assert params["cafile"] and params["validate_host"] is True
    assert params["dsn"] == "mlflow-sql.database.windows.net" and params["port"] == 1433
