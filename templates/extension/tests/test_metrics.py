"""GET /_mlflowctl/metrics: Prometheus' text format, checked by promtool (Debian's prometheus package) when it is
there, and always by prometheus_client's own parser; the values follow what the process did."""

import os
import shutil
import subprocess

from conftest import require
from mlflowctl_extension.metrics import Metrics, route_class
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "ops-token-for-tests-0123456789"


def promtool() -> str:
    """promtool from MLFLOWCTL_TEST_PROMTOOL or PATH (.ci/run unpacks it from Debian's prometheus package)."""
    found = os.environ.get("MLFLOWCTL_TEST_PROMTOOL") or shutil.which("promtool")
    if not found:
        require(False, "promtool is not installed (Debian package prometheus; .ci/run unpacks it)")
    return str(found)


def check_with_promtool(text: bytes) -> None:
    """`promtool check metrics` exits 1 on a parse error and 3 on a convention it lints (names, units, HELP)."""
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stdout.decode(), result.stderr.decode())


def samples(text: bytes) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_route_classes_are_few_and_fixed():
    assert route_class("/api/2.0/mlflow/runs/create") == "runs"
    assert route_class("/ajax-api/2.0/mlflow/runs/log-batch") == "metrics"
    assert route_class("/api/2.0/mlflow/metrics/get-history") == "metrics"
    assert route_class("/api/2.0/mlflow/experiments/search") == "experiments"
    assert route_class("/api/2.0/mlflow-artifacts/artifacts/1/a/model.pkl") == "artifacts"
    assert route_class("/api/2.0/mlflow/registered-models/search") == "models"
    assert route_class("/v1/traces") == "traces"
    assert route_class("/health") == "health"
    assert route_class("/static-files/js/main.js") == "ui"
    assert route_class("/api/2.0/mlflow/users/whatever") == "api_other"


def test_a_starting_process_reports_down_and_the_format_passes_promtool():
    metrics = Metrics()
    view = {"state": "migrating", "migration": {"step": 2, "of": 5, "startedAt": "2026-12-08T01:00:00Z"}}
    metrics.bind_state(lambda: view, lambda: None)
    metrics.observe("/api/2.0/mlflow/runs/create", 503, 0.002)
    metrics.handler_waited(0.25)
    text = metrics.render()
    check_with_promtool(text)
    found = samples(text)
    assert found["mlflowctl_up"][0].value == 0
    assert found["mlflowctl_migration_running"][0].value == 1
    assert found["mlflowctl_migration_step"][0].value == 2 and found["mlflowctl_migration_steps"][0].value == 5
    state = {s.labels["state"]: s.value for s in found["mlflowctl_startup_state"]}
    assert state == {"starting": 0, "migrating": 1, "ready": 0, "refused": 0}
    assert "mlflowctl_build_info" not in found  # the status is read only once ready
    (requests,) = found["mlflowctl_http_requests_total"]
    assert requests.labels == {"route": "runs", "status": "503"} and requests.value == 1
    assert found["mlflowctl_handler_waits_total"][0].value == 1
    assert found["mlflowctl_handler_wait_seconds_total"][0].value == 0.25


def test_handler_slots_are_read_at_scrape_time():
    from mlflowctl_extension.dispatch import BoundedWsgi

    seen = {}

    def app(environ, start_response):
        seen["during"] = samples(metrics.render())
        start_response("200 OK", [])
        return [b"ok"]

    metrics = Metrics()
    bounded = BoundedWsgi(app, 4, metrics.handler_waited)
    metrics.bind_slots(bounded.slots)
    assert list(bounded({}, lambda *args: None)) == [b"ok"]
    assert seen["during"]["mlflowctl_handler_slots"][0].value == 4
    assert seen["during"]["mlflowctl_handler_slots_busy"][0].value == 1
    after = samples(metrics.render())
    assert (
        after["mlflowctl_handler_slots_busy"][0].value == 0 and after["mlflowctl_handler_slots_waiting"][0].value == 0
    )


def test_a_status_that_fails_leaves_the_scrape_answering():
    metrics = Metrics()

    def broken():
        raise RuntimeError("database down")

    metrics.bind_state(lambda: {"state": "ready"}, broken)
    found = samples(metrics.render())
    assert found["mlflowctl_up"][0].value == 1 and found["mlflowctl_status_up"][0].value == 0
