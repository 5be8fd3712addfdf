"""How many requests MLflow handles at once in one process, and the pool that serves them (concurrency.py,
dispatch.py): pure rules, and the bound under a WSGI host's threads."""

from __future__ import annotations

import threading
import time

from mlflowctl_extension.concurrency import handler_threads, pool_environment
from mlflowctl_extension.dispatch import BoundedWsgi


def test_sqlite_runs_few_handlers_at_once_and_a_server_database_a_host_full():
    assert handler_threads("sqlite", {}) == 4
    assert handler_threads("postgresql", {}) == 20
    assert handler_threads("sqlite", {"MLFLOWCTL_HANDLER_THREADS": "12"}) == 12
    # Not a positive number: the default, not a crash at start-up.
    assert handler_threads("sqlite", {"MLFLOWCTL_HANDLER_THREADS": "0"}) == 4
    assert handler_threads("sqlite", {"MLFLOWCTL_HANDLER_THREADS": "many"}) == 4


def test_the_pool_holds_two_connections_for_every_request_a_host_runs_at_once_unless_the_operator_chose():
    # A WSGI host runs 20 requests at once whatever the handler bound: 40 connections, 10 of them kept idle.
    assert pool_environment("sqlite", {}) == {
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "10",
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "30",
    }
    assert pool_environment("postgresql", {"MLFLOWCTL_HANDLER_THREADS": "32"}) == {
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "10",
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "54",
    }
    for chosen in (
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE",
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW",
        "MLFLOW_SQLALCHEMYSTORE_POOLCLASS",
    ):
        assert pool_environment("sqlite", {chosen: "5"}) == {}


def test_a_wsgi_host_with_more_threads_than_the_bound_never_has_more_handlers_inside_the_app():
    inside, most = 0, 0
    lock = threading.Lock()

    def app(environ, start_response):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    bounded = BoundedWsgi(app, 3)
    answers: list[bytes] = []
    threads = [
        threading.Thread(target=lambda i=i: answers.extend(bounded({"PATH_INFO": f"/{i}"}, lambda *_: None)))
        for i in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 3
    assert sorted(answers) == sorted(f"/{i}".encode() for i in range(12))
