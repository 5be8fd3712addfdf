from mlflowctl_extension.logs import redact, register_secret


def test_url_passwords_are_masked():
    assert redact("postgresql://mlflow:s3cr%40t@db:5432/x") == "postgresql://mlflow:***@db:5432/x"


def test_registered_secrets_are_masked_anywhere():
    register_secret("tok-abcdef-123")
    assert "tok-abcdef-123" not in redact("header X: tok-abcdef-123 trailing")


def test_short_values_are_not_registered():
    register_secret("ab")
    assert redact("ab cd") == "ab cd"
