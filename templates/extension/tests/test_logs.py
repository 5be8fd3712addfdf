from mlflowctl_extension.logs import redact, register_secret


def test_url_passwords_are_masked():
    assert redact("postgresql://mlflow:s3cr%40t@db:5432/x") == "postgresql://mlflow:***@db:5432/x"


def test_registered_secrets_are_masked_anywhere():
    register_secret("tok-abcdef-123")
    assert "tok-abcdef-123" not in redact("header X: tok-abcdef-123 trailing")


def test_short_values_are_not_registered():
    register_secret("ab")
    assert redact("ab cd") == "ab cd"


def test_renewed_credentials_are_bounded_but_static_secrets_stay():
    from mlflowctl_extension.logs import MAX_ROTATING_SECRETS

    register_secret("static-api-key-0000")
    register_secret("first-credential-0000", rotating=True)
    for i in range(MAX_ROTATING_SECRETS):
        register_secret(f"renewed-credential-{i:05d}", rotating=True)
    assert redact("renewed-credential-00000") == "***", "a recent credential is still masked"
    assert redact("first-credential-0000") == "first-credential-0000", "the oldest renewed one made room"
    assert redact("static-api-key-0000") == "***", "a static secret is never evicted"


def test_signed_query_parts_of_an_rds_token_are_masked():
    token = "db:5432/?Action=connect&DBUser=u&X-Amz-Credential=ASIA%2F2026&X-Amz-Security-Token=FQo%2Babc&X-Amz-Signature=0123abcd"
    masked = redact(f"connecting with {token}")
    assert "FQo" not in masked and "0123abcd" not in masked and "ASIA" not in masked
    assert "DBUser=u" in masked


def test_other_libraries_and_thread_exceptions_go_through_redaction(capsys):
    import logging
    import threading

    from mlflowctl_extension.logs import configure_logging

    configure_logging()
    register_secret("ya29.bearer-token-0123", rotating=True)
    logging.getLogger("asyncio").error(
        "Task exception was never retrieved: headers {'Authorization': 'Bearer ya29.bearer-token-0123'}"
    )

    def leak():
        raise RuntimeError("request failed with Authorization: Bearer ya29.bearer-token-0123")

    thread = threading.Thread(target=leak)
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    assert "ya29.bearer-token-0123" not in err
    assert '"logger": "asyncio"' in err and "uncaught exception in thread" in err


def test_the_servers_own_lines_are_json_like_every_other_line(capsys):
    """uvicorn and gunicorn configure plain-text handlers before app.py is imported: configure_logging takes them over."""
    import json
    import logging

    from mlflowctl_extension.logs import SERVER_LOGGERS, configure_logging

    for name in SERVER_LOGGERS:  # what the servers do at start: a handler of their own that prints plain text
        plain = logging.StreamHandler()
        plain.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logging.getLogger(name).handlers = [plain]
        logging.getLogger(name).setLevel(logging.INFO)
    configure_logging()
    logging.getLogger("uvicorn.error").info("Started server process [42]")
    logging.getLogger("uvicorn.access").info('127.0.0.1:5000 - "GET /health HTTP/1.1" 200')
    logging.getLogger("gunicorn.error").info("Booting worker with pid: 43")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 3, lines
    parsed = [json.loads(line) for line in lines]
    assert [entry["logger"] for entry in parsed] == ["uvicorn.error", "uvicorn.access", "gunicorn.error"]
    assert parsed[0]["msg"] == "Started server process [42]"
