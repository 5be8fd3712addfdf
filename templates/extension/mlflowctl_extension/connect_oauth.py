"""Credentials from the content's Connect OAuth integration, renewed before they expire.

Connect hands running content a *content session token* (CONNECT_CONTENT_SESSION_TOKEN_FILE, else
CONNECT_CONTENT_SESSION_TOKEN). The content trades it, with its CONNECT_API_KEY, for credentials of the
service-account integration associated with it: POST /__api__/v1/oauth/integrations/credentials, a
form-encoded RFC 8693 token exchange. No secret this module sees is ever logged:
each one is registered with the log redactor the moment it arrives.
"""

from __future__ import annotations

import base64
import calendar
import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeGuard, TypeVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import HTTPRedirectHandler, Request, build_opener

from .logs import log_event, register_secret
from .settings import StartupError

EXCHANGE_PATH = "__api__/v1/oauth/integrations/credentials"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
CONTENT_SESSION_TOKEN = "urn:posit:connect:content-session-token"
AWS_CREDENTIALS = "urn:ietf:params:aws:token-type:credentials"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
# Connect's error code when the content has no (matching) integration associated.
NO_INTEGRATION_CODE = 212
# Several integrations associated and no audience named (OAuthCredentialsInvalidAssociationCount, most likely 257),
# and a content session token Connect does not accept (most likely 236), from the OpenAPI
# error enum; the numbers are not confirmed against a server.
AMBIGUOUS_ASSOCIATION_CODE = 257
INVALID_SESSION_TOKEN_CODE = 236
# Used only when Connect's answer carries neither expires_in nor a JWT exp claim (whether Connect sends
# expires_in is UNCONFIRMED). Short on purpose: a token renewed too early costs one exchange.
ASSUMED_LIFETIME_SECONDS = 600.0
# Renew this long before expiry at most; for short-lived credentials, a third of their lifetime.
MAX_REFRESH_MARGIN_SECONDS = 300.0

T = TypeVar("T")


class _RefuseRedirects(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx surfaces as an HTTPError


_NO_REDIRECTS = build_opener(_RefuseRedirects)


class CredentialError(StartupError):
    """A credential could not be obtained or renewed; the message is safe to log."""


@dataclass(frozen=True)
class Issued(Generic[T]):
    value: T
    expires_at: float  # epoch seconds


def refresh_margin(lifetime_seconds: float) -> float:
    return max(0.5, min(MAX_REFRESH_MARGIN_SECONDS, lifetime_seconds / 3))


class ConnectTokenExchange:
    """One content's view of Connect's token-exchange endpoint."""

    def __init__(self, env: Mapping[str, str], timeout: float = 15.0) -> None:
        missing = [name for name in ("CONNECT_SERVER", "CONNECT_API_KEY") if not env.get(name)]
        if missing:
            raise CredentialError(
                f"Credentials from a Connect OAuth integration need {' and '.join(missing)}, which Connect sets for "
                "running content; they are not set. Outside Connect, set MLFLOWCTL_CREDENTIALS=ambient to use the "
                "cloud SDK's own credential chain."
            )
        self.server = env["CONNECT_SERVER"].rstrip("/") + "/"
        self._api_key = env["CONNECT_API_KEY"]
        self._env = env
        self.timeout = timeout
        register_secret(self._api_key)

    def session_token(self) -> str:
        """Read on every exchange: Connect may rotate the file while the process runs."""
        path = self._env.get("CONNECT_CONTENT_SESSION_TOKEN_FILE")
        token = ""
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                if not self._env.get("CONNECT_CONTENT_SESSION_TOKEN"):
                    raise CredentialError(
                        f"CONNECT_CONTENT_SESSION_TOKEN_FILE={path} is not readable: {exc.strerror}."
                    ) from None
        token = token or (self._env.get("CONNECT_CONTENT_SESSION_TOKEN") or "").strip()
        if not token:
            raise CredentialError(
                "No content session token: Connect sets CONNECT_CONTENT_SESSION_TOKEN(_FILE) only for content with a "
                "service-account OAuth integration associated (Connect 2024.12+). Associate one with "
                "`mlflowctl deploy --oauth-integration GUID`, or set MLFLOWCTL_CREDENTIALS=ambient."
            )
        register_secret(token)
        return token

    def exchange(
        self, requested_token_type: str, audience: str | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        form = {
            "grant_type": GRANT_TYPE,
            "subject_token_type": CONTENT_SESSION_TOKEN,
            "subject_token": self.session_token(),
            "requested_token_type": requested_token_type,
        }
        if audience:
            form["audience"] = audience
        if scope:
            form["scope"] = scope  # passed through as connectcreds does; whether Connect honours it is UNCONFIRMED
        request = Request(
            self.server + EXCHANGE_PATH,
            data=urlencode(form).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        # Unredirected: urllib copies ordinary headers into a redirect, even to another host.
        request.add_unredirected_header("Authorization", f"Key {self._api_key}")
        try:
            with _NO_REDIRECTS.open(request, timeout=self.timeout) as response:
                payload = json.loads(response.read() or b"{}")
        except HTTPError as exc:
            raise _exchange_refused(exc) from None
        except (URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise CredentialError(f"Cannot reach Connect's token exchange at {self.server}: {reason}.") from None
        if not isinstance(payload, dict):
            raise CredentialError("Connect's token exchange answered with something other than a JSON object.")
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise CredentialError("Connect's token exchange answered without an access_token.")
        register_secret(token, rotating=True)
        return payload


def _exchange_refused(exc: HTTPError) -> CredentialError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("error") if isinstance(body, dict) else None
    if code == NO_INTEGRATION_CODE:
        return CredentialError(
            f"No OAuth integration is associated with this content (Connect error {NO_INTEGRATION_CODE}: {message or 'no integration'}). "
            "Associate a service-account integration: `mlflowctl deploy --oauth-integration GUID`, or in the content's Access settings."
        )
    if code == AMBIGUOUS_ASSOCIATION_CODE:
        return CredentialError(
            f"Several OAuth integrations are associated with this content and none was named (Connect error {code}: {message or 'ambiguous'}). "
            "Set MLFLOWCTL_OAUTH_INTEGRATION to the GUID of the one to use (or MLFLOWCTL_DB_OAUTH_INTEGRATION and MLFLOWCTL_ARTIFACTS_OAUTH_INTEGRATION)."
        )
    if code == INVALID_SESSION_TOKEN_CODE:
        return CredentialError(
            f"Connect did not accept this content's session token (Connect error {code}: {message or 'invalid session token'}). "
            "Restart the content so that Connect issues a new one; if it persists, check that the content runs on Connect (not a copy of its environment)."
        )
    if exc.code in (401, 403):
        return CredentialError(
            f"Connect refused the token exchange (HTTP {exc.code}{f', code {code}' if code else ''}): {message or exc.reason}. Check that the content's API key is enabled and the integration allows this content."
        )
    return CredentialError(
        f"Connect's token exchange failed (HTTP {exc.code}{f', code {code}' if code else ''}): {message or exc.reason}."
    )


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying it (the signature is the resource server's job); {}
    for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str) -> float | None:
    try:
        return float(jwt_claims(token)["exp"])
    except (KeyError, TypeError, ValueError):
        return None


def access_token_expiry(payload: Mapping[str, Any], now: float) -> float:
    if isinstance(payload.get("expires_in"), (int, float)):
        return now + float(payload["expires_in"])
    return jwt_expiry(payload["access_token"]) or now + ASSUMED_LIFETIME_SECONDS


def parse_aws_credentials(access_token: str) -> Issued[dict[str, str]]:
    """Connect's AWS answer: base64 JSON {accessKeyId, secretAccessKey, sessionToken, expiration}."""
    try:
        raw = json.loads(base64.b64decode(access_token + "=" * (-len(access_token) % 4)))
        creds = {
            "access_key": raw["accessKeyId"],
            "secret_key": raw["secretAccessKey"],
            "token": raw.get("sessionToken") or "",
        }
        expires_at = float(calendar.timegm(time.strptime(raw["expiration"], "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, KeyError, TypeError):
        raise CredentialError(
            "Connect's AWS credentials are not the documented base64 JSON (accessKeyId, secretAccessKey, sessionToken, expiration)."
        ) from None
    for secret in creds.values():
        register_secret(secret, rotating=True)
    return Issued(creds, expires_at)


class RefreshingCredential(Generic[T]):
    """Holds one credential and renews it a margin before expiry, once, whatever the number of threads.

    - While the current credential is valid, no caller waits for a renewal another thread is running.
    - A failed renewal keeps a still-valid credential, is logged, and is not retried for a few seconds
      (backoff), so a struggling Connect is not hammered by every request.
    - Once the credential has expired, or is in its last moments (the guard: the login it is for happens a
      little later, a new database connection or a request on the wire, and must not arrive after the
      expiry), callers wait for a renewal, and get CredentialError if it fails.
    """

    RETRY_AFTER_FAILURE_SECONDS = 5.0
    MAX_GUARD_SECONDS = 2.0

    def __init__(
        self, name: str, fetch: Callable[[], Issued[T]], clock: Callable[[], float] = time.time, min_margin: float = 0.0
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._clock = clock
        self._min_margin = min_margin
        self._lock = threading.Lock()
        self._current: Issued[T] | None = None
        self._lifetime = 0.0
        self._retry_at = 0.0
        self.renewals = 0

    @property
    def expires_at(self) -> float | None:
        current = self._current
        return current.expires_at if current else None

    def _margin(self) -> float:
        # A consumer may need more headroom than a third of the lifetime (the Cloud SQL connector treats
        # what expires within 4 minutes as stale), but never more than most of the lifetime.
        return max(refresh_margin(self._lifetime), min(self._min_margin, self._lifetime * 0.8))

    def _fresh(self, current: Issued[T] | None, now: float) -> TypeGuard[Issued[T]]:
        return current is not None and now < current.expires_at - self._margin()

    def _usable(self, current: Issued[T] | None, now: float) -> TypeGuard[Issued[T]]:
        guard = min(self.MAX_GUARD_SECONDS, self._lifetime / 10)
        return current is not None and now < current.expires_at - guard

    def get_issued(self) -> Issued[T]:
        """The value and its expiry, read together (a concurrent renewal cannot pair one with the other)."""
        current = self._current
        now = self._clock()
        if self._fresh(current, now):
            return current
        if self._usable(current, now):
            # Still valid: renew if nobody else is, otherwise keep serving the current one.
            if now < self._retry_at or not self._lock.acquire(blocking=False):
                return current
        else:
            self._lock.acquire()
        try:
            return self._renew()
        finally:
            self._lock.release()

    def get(self) -> T:
        return self.get_issued().value

    def _renew(self) -> Issued[T]:
        current = self._current
        if self._fresh(current, self._clock()):
            return current
        try:
            issued = self._fetch()
        except CredentialError as exc:
            return self._after_failure(current, str(exc))
        except Exception as exc:  # an SDK or transport error the fetch did not classify
            return self._after_failure(current, f"{type(exc).__name__}: {exc}")
        now = self._clock()  # the fetch may have taken a while
        if issued.expires_at <= now:
            return self._after_failure(
                current, f"Connect issued an already-expired {self.name} credential; check the clock of this host"
            )
        self._lifetime = issued.expires_at - now
        self._current = issued
        self._retry_at = 0.0
        self.renewals += 1
        log_event(
            "credentials.renewed",
            f"{self.name} credential obtained",
            credential=self.name,
            expiresAt=_iso(issued.expires_at),
            lifetimeSeconds=round(self._lifetime, 1),
        )
        return issued

    def _after_failure(self, current: Issued[T] | None, reason: str) -> Issued[T]:
        if current is None:
            raise CredentialError(reason)
        now = self._clock()
        if self._usable(current, now):
            self._retry_at = now + self.RETRY_AFTER_FAILURE_SECONDS
            log_event(
                "credentials.renewal_failed",
                f"{self.name}: renewal failed, the current credential is still valid",
                logging.WARNING,
                reason=reason,
            )
            return current
        raise CredentialError(f"The {self.name} credential expired and could not be renewed: {reason}")


def access_token_source(
    exchange: ConnectTokenExchange,
    name: str,
    audience: str | None,
    scope: str | None,
    clock: Callable[[], float] = time.time,
    min_margin: float = 0.0,
) -> RefreshingCredential[str]:
    def fetch() -> Issued[str]:
        # expires_in counts from when Connect answered, which is no earlier than when the request was sent:
        # counting from the arrival instead would stretch every lifetime by the exchange's latency.
        sent = clock()
        payload = exchange.exchange(ACCESS_TOKEN, audience=audience, scope=scope)
        return Issued(payload["access_token"], access_token_expiry(payload, sent))

    return RefreshingCredential(name, fetch, clock, min_margin)


def aws_credentials_source(
    exchange: ConnectTokenExchange, audience: str | None, clock: Callable[[], float] = time.time
) -> RefreshingCredential[dict[str, str]]:
    def fetch() -> Issued[dict[str, str]]:
        return parse_aws_credentials(exchange.exchange(AWS_CREDENTIALS, audience=audience)["access_token"])

    return RefreshingCredential("aws", fetch, clock)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
