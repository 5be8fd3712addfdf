"""The pieces of storage report and gc that need no server: where a row's URI lands in the artifact store, which
unclaimed directories are orphans gc may take, and the plan's rules (what is kept, what waits for --older-than)."""

from __future__ import annotations

import time

import pytest
from mlflowctl_extension.artifact_files import ArtifactFile, DirectoryFiles, open_artifact_files
from mlflowctl_extension.storage_catalog import Catalog, Row, orphan_units
from mlflowctl_extension.storage_gc import GcOptions, plan_gc

RUN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def test_uris_resolve_inside_the_store_and_nowhere_else(tmp_path):
    files = DirectoryFiles(str(tmp_path / "artifacts"))
    root = files.destination
    assert files.relative(f"mlflow-artifacts:/1/{RUN}/artifacts") == f"1/{RUN}/artifacts"
    assert files.relative(f"mlflow-artifacts://host:5000/1/{RUN}/artifacts") == f"1/{RUN}/artifacts"
    assert files.relative(f"{root}/1/{RUN}") == f"1/{RUN}"
    assert files.relative(f"file://{root}/2") == "2"
    assert files.relative("s3://elsewhere/1/x") is None, "another store is never ours to delete"
    assert files.relative(f"{root}-other/1") is None, "a sibling directory with the same prefix is not inside"
    assert files.relative("mlflow-artifacts:/1/../../etc") is None, "no way out of the store"
    assert files.relative(None) is None
    with pytest.raises(ValueError):
        open_artifact_files("ftp://host/path")


def test_delete_removes_a_prefix_and_the_directories_it_empties_but_never_the_root(tmp_path):
    files = DirectoryFiles(str(tmp_path / "artifacts"))
    for path in (f"1/{RUN}/artifacts/a.bin", f"1/{RUN}/artifacts/sub/b.bin", f"1/{OTHER}/artifacts/c.bin"):
        target = tmp_path / "artifacts" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    assert files.delete(f"1/{RUN}") == 2
    assert sorted(item.path for item in files.walk()) == [f"1/{OTHER}/artifacts/c.bin"]
    assert files.delete(f"1/{OTHER}") == 1
    assert not (tmp_path / "artifacts" / "1").exists(), "the emptied experiment directory goes too"
    assert (tmp_path / "artifacts").is_dir()
    assert files.delete(f"1/{RUN}") == 0, "already gone is not an error"
    with pytest.raises(ValueError):
        files.delete("")


def _files(*paths: str, age: float = 0) -> list[ArtifactFile]:
    return [ArtifactFile(path, 10, time.time() - age) for path in paths]


def test_orphans_are_only_directories_of_mlflow_s_layout_that_nothing_claims():
    listing = _files(
        f"1/{RUN}/artifacts/model.pkl",  # claimed by a run
        f"1/{OTHER}/artifacts/left.bin",  # a run directory with no row
        "1/models/m-0a1b2c/artifacts/MLmodel",  # a logged model with no row
        f"1/traces/tr-{RUN}/artifacts/traces.json",  # a trace with no row
        "1/notes.txt",  # a file beside the run directories
        "1/datasets/x/part-0.parquet",  # a directory MLflow's layout does not name
        "7/abc/artifacts/old.bin",  # an experiment directory whose row is gone
        "copied-by-hand/data.csv",  # something else entirely
    )
    units = orphan_units(listing, claims={f"1/{RUN}"}, experiment_paths=["1", "0"])
    recognised = {unit.path for unit in units if unit.recognised}
    unrecognised = {unit.path for unit in units if not unit.recognised}
    assert recognised == {f"1/{OTHER}", "1/models/m-0a1b2c", f"1/traces/tr-{RUN}", "7"}
    assert unrecognised == {"1/notes.txt", "1/datasets", "copied-by-hand"}


def test_a_directory_that_holds_a_claim_is_never_an_orphan():
    # A model version's files inside a run directory whose run row is gone: the run directory holds a claim.
    listing = _files(f"1/{OTHER}/artifacts/model/weights.bin", f"1/{OTHER}/artifacts/plot.png")
    units = orphan_units(listing, claims={f"1/{OTHER}/artifacts/model"}, experiment_paths=["1"])
    assert [(unit.path, unit.recognised) for unit in units] == [(f"1/{OTHER}", False)]


def test_the_plan_purges_what_is_old_enough_and_keeps_files_a_remaining_row_uses():
    now = 1_800_000_000_000
    day = 86_400_000
    catalog = Catalog(tables=set())
    catalog.live += [
        Row("experiment", "1", "1", "1"),
        Row("modelVersion", "m/1", None, f"1/{RUN}/artifacts/model"),
    ]
    catalog.deleted += [
        Row("run", RUN, "1", f"1/{RUN}", now - 40 * day),  # old enough, but a live version uses its model
        Row("run", OTHER, "1", f"1/{OTHER}", now - 40 * day),
        Row("run", "a" * 32, "1", f"1/{'a' * 32}", now - 2 * day),  # deleted two days ago
        Row("run", "b" * 32, "1", f"1/{'b' * 32}", None),  # deleted before MLflow kept deletion times
    ]
    listing = _files(f"1/{RUN}/artifacts/model/w.bin", f"1/{OTHER}/artifacts/x.bin", f"1/{'a' * 32}/artifacts/y.bin")
    plan = plan_gc(catalog, listing, GcOptions(older_than_ms=30 * day), now)
    assert sorted(row.id for row in plan.targets["runs"].rows) == sorted([RUN, OTHER])
    assert plan.targets["runs"].paths == [f"1/{OTHER}"]
    assert plan.kept == [f"1/{RUN}"]
    assert (plan.targets["runs"].bytes, plan.targets["runs"].files) == (10, 1)
    everything = plan_gc(catalog, listing, GcOptions(older_than_ms=0), now)
    assert len(everything.targets["runs"].rows) == 3, "older-than 0 takes the two-day-old one too, never the undated"
    assert plan_gc(catalog, listing, GcOptions(older_than_ms=None), now).targets["runs"].rows == []
    catalog.pinned_runs.add(RUN)  # a live model version comes from it (runs:/…): the run stays, row and files
    pinned = plan_gc(catalog, listing, GcOptions(older_than_ms=30 * day), now)
    assert [row.id for row in pinned.targets["runs"].rows] == [OTHER] and pinned.kept == [f"1/{RUN}"]


def test_the_orphan_grace_spares_what_changed_recently(tmp_path):
    catalog = Catalog(tables=set())
    catalog.live.append(Row("experiment", "1", "1", "1"))
    catalog.experiments["1"] = "1"
    listing = [*_files(f"1/{RUN}/artifacts/old.bin", age=3 * 86400), *_files(f"1/{OTHER}/artifacts/new.bin", age=60)]
    plan = plan_gc(catalog, listing, GcOptions(orphans=True, grace_seconds=86400), int(time.time() * 1000))
    assert plan.targets["orphans"].paths == [f"1/{RUN}"]
