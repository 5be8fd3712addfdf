"""Exactly one process migrates when several start at once (file lock for SQLite, advisory lock for PG)."""

import subprocess
import sys

from conftest import base_env
from test_startup import events


def start_many(bundle, env, count=3):
    script = "import sys, app; sys.exit(0 if app.app.startup.wait(280) else 1)"  # start-up runs on its own thread
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=bundle,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    return [(p.wait(timeout=300), p.stderr.read()) for p in procs]


def assert_one_migration(results):
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
    starts = sum(1 for _, stderr in results for e in events(stderr) if e["event"] == "migration.start")
    currents = sum(
        1
        for _, stderr in results
        for e in events(stderr)
        if e["event"] == "migration.check" and e["state"] == "current"
    )
    assert starts == 1
    assert currents == len(results) - 1


def test_concurrent_startup_on_sqlite_migrates_once(bundle, tmp_path):
    assert_one_migration(start_many(bundle, base_env(CONNECT_CONTENT_DATA_DIR=str(tmp_path / "data"))))


def test_concurrent_startup_on_postgres_migrates_once(bundle, tmp_path, pg_url):
    env = base_env(MLFLOW_BACKEND_STORE_URI=pg_url, MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"))
    assert_one_migration(start_many(bundle, env))
