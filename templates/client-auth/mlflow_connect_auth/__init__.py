"""MLflow request-auth plugin for Posit Connect: `Authorization: Key <CONNECT_API_KEY>`."""

from __future__ import annotations

import os

from requests.auth import AuthBase

PROVIDER_NAME = "connect-api-key"


class ConnectApiKeyAuth(AuthBase):
    """Adds Connect's API-key header to every request MLflow sends."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request):
        request.headers["Authorization"] = f"Key {self._api_key}"
        return request

    def __repr__(self) -> str:  # never show the key
        return "ConnectApiKeyAuth(***)"


class ConnectApiKeyAuthProvider:
    """Selected with MLFLOW_TRACKING_AUTH=connect-api-key (duck-typed RequestAuthProvider)."""

    def get_name(self) -> str:
        return PROVIDER_NAME

    def get_auth(self) -> ConnectApiKeyAuth:
        key = os.environ.get("CONNECT_API_KEY") or os.environ.get("MLFLOW_TRACKING_TOKEN")
        if not key:
            raise RuntimeError(
                "MLFLOW_TRACKING_AUTH=connect-api-key needs CONNECT_API_KEY (or MLFLOW_TRACKING_TOKEN) to be set."
            )
        return ConnectApiKeyAuth(key)
