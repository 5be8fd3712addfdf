"""The JSON the extension and restore_db.py write, against test/data/shared-shapes.json: the CLI's unit tests check
the same examples with its zod schemas, so a shape changed on one side only fails one of the two suites."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest
from mlflowctl_extension.replica_layout import META_FIELDS, SEGMENT_FIELDS, SNAPSHOT_FIELDS, shape_problem
from mlflowctl_extension.replicator import Replicator

ROOT = Path(__file__).resolve().parents[3]
SHAPES = json.loads((ROOT / "test" / "data" / "shared-shapes.json").read_text())
LAYOUT = {"replicaMeta": META_FIELDS, "snapshot": SNAPSHOT_FIELDS, "segment": SEGMENT_FIELDS}


def _restore_db():
    spec = importlib.util.spec_from_file_location("restore_db", ROOT / "templates" / "tools" / "restore_db.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", sorted(LAYOUT))
def test_the_replica_layout_accepts_every_valid_example_and_refuses_every_invalid_one(kind):
    for example in SHAPES[kind]["valid"]:
        assert shape_problem(LAYOUT[kind], example) is None, example
    for example in SHAPES[kind]["invalid"]:
        assert shape_problem(LAYOUT[kind], example) is not None, example


def test_restore_db_phase_lines_accept_every_valid_example_and_refuse_every_invalid_one():
    restore_db = _restore_db()
    assert sorted(SHAPES["phases"]) == sorted(restore_db.PHASES)
    for name, examples in SHAPES["phases"].items():
        for example in examples["valid"]:
            assert restore_db.phase_problem(name, example) is None, (name, example)
        for example in examples["invalid"]:
            assert restore_db.phase_problem(name, example) is not None, (name, example)


def test_what_the_replicator_writes_has_the_layout_s_shapes(tmp_path: Path):
    database = tmp_path / "mlflow.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    replica = tmp_path / "replica"
    replicator = Replicator(database, replica, compact_segments=2, compact_age=0.0)
    replicator.ship()
    for round_number in range(4):
        writer.execute("INSERT INTO runs (name) VALUES (?)", (f"run-{round_number}",))
        replicator.ship()
    replicator.maintain()
    replicator.close()
    writer.close()
    files = {path.relative_to(replica).as_posix(): json.loads(path.read_text()) for path in replica.rglob("*.json")}
    kinds = {"meta": 0, "snapshot": 0, "segment": 0}
    for key, data in files.items():
        if key == "mlflowctl-replica.json":
            kind, fields = "meta", META_FIELDS
        elif key.endswith("/snapshot.json"):
            kind, fields = "snapshot", SNAPSHOT_FIELDS
        else:
            kind, fields = "segment", SEGMENT_FIELDS
        assert shape_problem(fields, data) is None, (key, shape_problem(fields, data))
        kinds[kind] += 1
    assert kinds["meta"] == 1 and kinds["snapshot"] >= 1 and kinds["segment"] >= 2, kinds


def test_retention_policies_read_as_deploy_checks_them():
    from mlflowctl_extension.settings import load_retention_settings

    for policy in SHAPES["retentionPolicy"]["valid"]:
        settings = load_retention_settings({"MLFLOWCTL_RETENTION": policy})
        assert settings is not None and settings.invalid is None, policy
    for policy in SHAPES["retentionPolicy"]["invalid"]:
        settings = load_retention_settings({"MLFLOWCTL_RETENTION": policy})
        assert settings is not None and settings.invalid, policy
