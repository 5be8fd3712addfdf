"""Structured (one JSON object per line) logging that never prints a secret."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

LOGGER_NAME = "mlflowctl"
_secrets: set[str] = set()
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)


def register_secret(value: str | None) -> None:
    """Remembers a value that must never reach a log line (passwords, tokens, keys)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    """Masks URL passwords and every registered secret in `text`."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    for secret in _secrets:
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
        return redact(json.dumps(payload, default=str))


def configure_logging() -> None:
    """Routes the extension's, alembic's and MLflow's loggers through the redacting JSON handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_RedactingFilter())
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
