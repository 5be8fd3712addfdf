"""Structured (one JSON object per line) logging that never prints a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any

LOGGER_NAME = "mlflowctl"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
# Secrets that stay for the life of the process (API key, ops token, passwords) are kept for good.
# Renewed credentials arrive all the time and every log line is checked against each one, so they are
# kept in an insertion-ordered, bounded dict: the oldest (long expired) make room first.
_static_secrets: set[str] = set()
_rotating_secrets: dict[str, None] = {}
_secrets_lock = threading.Lock()
MAX_ROTATING_SECRETS = 512
# Presigned requests (an RDS IAM token is one): the signature and session token are the secret parts.
_SIGNED_QUERY = re.compile(r"(?P<key>X-Amz-(?:Signature|Security-Token|Credential)=)[^&\s\"']+", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)


def register_secret(value: str | None, rotating: bool = False) -> None:
    """Remembers a value that must never reach a log line (passwords, tokens, keys). `rotating` marks a
    credential that will be renewed (bounded memory); the others are kept for good."""
    if not value or len(value) < 4:
        return
    with _secrets_lock:
        if not rotating:
            _static_secrets.add(value)
            return
        _rotating_secrets.pop(value, None)
        _rotating_secrets[value] = None
        while len(_rotating_secrets) > MAX_ROTATING_SECRETS:
            del _rotating_secrets[next(iter(_rotating_secrets))]


def redact(text: str) -> str:
    """Masks URL passwords and every registered secret in `text`."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _SIGNED_QUERY.sub(lambda m: f"{m['key']}***", text)
    with _secrets_lock:
        secrets = sorted([*_static_secrets, *_rotating_secrets], key=len, reverse=True)
    for secret in secrets:  # longest first, so that a secret containing another is masked whole
        text = text.replace(secret, "***")
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event:
            payload["event"] = event
            payload.update(getattr(record, "fields", {}))
        payload["msg"] = record.getMessage()
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


def configure_logging() -> None:
    """Routes the extension's, alembic's and MLflow's loggers, and the root logger (every other library:
    asyncio, aiohttp, cloud SDKs), through the redacting JSON handler. Exceptions that escape a thread go
    through it too: an SDK error can carry request headers, bearer tokens included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    threading.excepthook = lambda args: logging.getLogger(LOGGER_NAME).error(
        "uncaught exception in thread %s",
        getattr(args.thread, "name", "?"),
        exc_info=args.exc_value,  # logging takes the traceback from the exception
    )
    # The server's own loggers (uvicorn's and gunicorn's) have handlers of their own that print plain text; they
    # are configured before app.py is imported, so their lines from here on go through this handler instead.
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.disabled = False
    for name in (LOGGER_NAME, "alembic", "mlflow"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        # `import mlflow` runs dictConfig, which disables loggers that existed before it.
        logger.disabled = False
        if name != "mlflow":
            logger.setLevel(logging.INFO)


def log_event(event: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Writes one structured line: `{"event": ..., <fields>, "msg": ...}`."""
    logging.getLogger(LOGGER_NAME).log(level, message, extra={"event": event, "fields": fields})
