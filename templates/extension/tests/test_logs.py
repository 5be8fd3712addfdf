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
    logging.getLogger("asyncio").error("Task exception was never retrieved: headers {'Authorization': 'Bearer ya29.bearer-token-0123'}")

    def leak():
        raise RuntimeError("request failed with Authorization: Bearer ya29.bearer-token-0123")

    thread = threading.Thread(target=leak)
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    assert "ya29.bearer-token-0123" not in err
    assert '"logger": "asyncio"' in err and "uncaught exception in thread" in err
