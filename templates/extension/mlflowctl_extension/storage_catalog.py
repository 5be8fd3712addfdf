"""What the database says about the artifact store, for `storage report` and `gc`: which rows are deleted but not
purged, which paths the remaining rows refer to, and so which directories nothing refers to (orphans).

Every query here reads the small tables (experiments, runs, logged_models, trace_info, trace_tags, model_versions)
and none reads metrics, which holds nearly all the rows of a busy store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

import sqlalchemy

from .artifact_files import ArtifactFile, ArtifactFiles

TRACE_ARTIFACT_TAG = "mlflow.artifactLocation"
DELETED_MODEL_VERSION = "Deleted_Internal"


@dataclass(frozen=True)
class Row:
    """One row that owns artifacts: its kind, id, experiment, where its files are (relative to the store, None when
    outside it) and its time in Unix ms: when it was deleted, for a deleted row; when it started, for a trace."""

    kind: str  # "experiment" | "run" | "loggedModel" | "trace" | "modelVersion"
    id: str
    experiment_id: str | None
    path: str | None
    at_ms: int | None = None


def owned_directory(path: str | None) -> str | None:
    """A run, logged model or trace keeps its files in `<dir>/artifacts`; the whole `<dir>` is its own."""
    if path is None:
        return None
    return path[: -len("/artifacts")] if path.endswith("/artifacts") else path


@dataclass
class Catalog:
    tables: set[str]
    live: list[Row] = field(default_factory=list)
    deleted: list[Row] = field(default_factory=list)
    experiments: dict[str, str | None] = field(default_factory=dict)  # id -> path of every experiment row
    # Runs a registered model version that is not deleted comes from: MLflow resolves its runs:/ source through the
    # run's row, so purging the run (row or files) would break the version.
    pinned_runs: set[str] = field(default_factory=set)

    def claims(self, excluding: set[tuple[str, str]] = frozenset()) -> set[str]:  # type: ignore[assignment]
        """The directories that rows other than experiments (and those in `excluding`, as (kind, id)) own."""
        # A deleted model version is a tombstone MLflow keeps for its version number; its files are gc's to take.
        rows = (*self.live, *(row for row in self.deleted if row.kind != "modelVersion"))
        return {
            row.path
            for row in rows
            if row.path is not None and row.kind != "experiment" and (row.kind, row.id) not in excluding
        }


def _has(tables: set[str], name: str) -> bool:
    return name in tables


def read_catalog(engine: sqlalchemy.engine.Engine, files: ArtifactFiles) -> Catalog:
    tables = set(sqlalchemy.inspect(engine).get_table_names())
    catalog = Catalog(tables)
    with engine.connect() as conn:
        run_paths: dict[str, str | None] = {}
        model_paths: dict[str, str | None] = {}
        for experiment_id, location, stage, updated in conn.execute(
            sqlalchemy.text(
                "SELECT experiment_id, artifact_location, lifecycle_stage, last_update_time FROM experiments"
            )
        ):
            path = files.relative(location)
            catalog.experiments[str(experiment_id)] = path
            row = Row("experiment", str(experiment_id), str(experiment_id), path, updated)
            (catalog.deleted if stage == "deleted" else catalog.live).append(row)
        for run_id, experiment_id, uri, stage, deleted in conn.execute(
            sqlalchemy.text("SELECT run_uuid, experiment_id, artifact_uri, lifecycle_stage, deleted_time FROM runs")
        ):
            path = owned_directory(files.relative(uri))
            run_paths[run_id] = files.relative(uri)
            row = Row("run", run_id, str(experiment_id), path, deleted)
            (catalog.deleted if stage == "deleted" else catalog.live).append(row)
        if _has(tables, "logged_models"):
            for model_id, experiment_id, location, stage, updated in conn.execute(
                sqlalchemy.text(
                    "SELECT model_id, experiment_id, artifact_location, lifecycle_stage, last_updated_timestamp_ms "
                    "FROM logged_models"
                )
            ):
                path = owned_directory(files.relative(location))
                model_paths[model_id] = files.relative(location)
                row = Row("loggedModel", model_id, str(experiment_id), path, updated)
                (catalog.deleted if stage == "deleted" else catalog.live).append(row)
        if _has(tables, "trace_info") and _has(tables, "trace_tags"):
            for trace_id, experiment_id, location, started in conn.execute(
                sqlalchemy.text(
                    "SELECT t.request_id, t.experiment_id, g.value, t.timestamp_ms FROM trace_info t "
                    "LEFT JOIN trace_tags g ON g.request_id = t.request_id AND g.key = :tag"
                ),
                {"tag": TRACE_ARTIFACT_TAG},
            ):
                catalog.live.append(
                    Row("trace", trace_id, str(experiment_id), owned_directory(files.relative(location)), started)
                )
        if _has(tables, "model_versions"):
            for name, version, stage, storage, source, run_id in conn.execute(
                sqlalchemy.text(
                    "SELECT name, version, current_stage, storage_location, source, run_id FROM model_versions"
                )
            ):
                if stage != DELETED_MODEL_VERSION:
                    catalog.pinned_runs.update(
                        r for r in (run_id, _source_run(source)) if r and r in run_paths and r != "REDACTED-RUN-ID"
                    )
                path = files.relative(storage) or _resolve_source(source, files, run_paths, model_paths)
                row = Row("modelVersion", f"{name}/{version}", None, path)
                (catalog.deleted if stage == DELETED_MODEL_VERSION else catalog.live).append(row)
    return catalog


def _source_run(source: str | None) -> str | None:
    return source.removeprefix("runs:/").strip("/").split("/")[0] if source and source.startswith("runs:/") else None


def _resolve_source(
    source: str | None, files: ArtifactFiles, runs: dict[str, str | None], models: dict[str, str | None]
) -> str | None:
    """runs:/<id>/path and models:/m-<id> sources, resolved to the files they name."""
    if not source:
        return None
    if source.startswith("runs:/"):
        run_id, _, rest = source.removeprefix("runs:/").strip("/").partition("/")
        base = runs.get(run_id)
        return f"{base}/{rest}".rstrip("/") if base is not None else None
    if source.startswith("models:/m-"):
        return models.get(source.removeprefix("models:/").strip("/"))
    return files.relative(source)


def covering(path: str, owned: set[str]) -> str | None:
    """The directory of `owned` that `path` lies in (or is), the outermost one first; None when there is none."""
    parts = path.split("/")
    return next(
        ("/".join(parts[:depth]) for depth in range(1, len(parts) + 1) if "/".join(parts[:depth]) in owned), None
    )


def covered(path: str, owned: set[str]) -> bool:
    """True when `path` lies in one of the `owned` directories (or is one)."""
    return covering(path, owned) is not None


@dataclass
class Unit:
    """A directory (or a lone file) of the artifact store that nothing refers to. `recognised`: it has the shape of
    what MLflow writes for a run, logged model, trace or experiment, so gc may take it; anything else (a directory
    a newer MLflow feature writes without a row pointing at it, a file someone put there) is reported, never taken."""

    path: str
    recognised: bool
    bytes: int = 0
    files: int = 0
    newest: float = 0.0


# What MLflow names its directories: <experiment id>/<run id>, <experiment>/models/m-<id>, <experiment>/traces/<id>.
RUN_DIRECTORY = re.compile(r"^[0-9a-f]{32}$")
OWNED_CONTAINERS = {"models": re.compile(r"^m-[0-9a-f]+$"), "traces": re.compile(r"^(tr-)?[0-9a-f]{32}$")}
EXPERIMENT_DIRECTORY = re.compile(r"^[0-9]+$")


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every path in `paths` and every directory above one."""
    found: set[str] = set()
    for path in paths:
        parts = path.split("/")
        found.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return found


def _unit_of(path: str, experiments: set[str]) -> tuple[str, bool]:
    """The directory a file belongs to in MLflow's layout, and whether that directory is one MLflow names."""
    parts = path.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        if "/".join(parts[:depth]) in experiments:
            base, rest = "/".join(parts[:depth]), parts[depth:]
            if rest[0] in OWNED_CONTAINERS and len(rest) >= 3:
                return f"{base}/{rest[0]}/{rest[1]}", bool(OWNED_CONTAINERS[rest[0]].match(rest[1]))
            if len(rest) >= 2:
                return f"{base}/{rest[0]}", bool(RUN_DIRECTORY.match(rest[0]))
            return path, False
    # Not under any experiment's directory: an experiment whose row is gone, or something else.
    return parts[0], len(parts) >= 2 and bool(EXPERIMENT_DIRECTORY.match(parts[0]))


def orphan_units(
    listing: Iterable[ArtifactFile], claims: set[str], experiment_paths: Iterable[str | None]
) -> list[Unit]:
    """The directories of MLflow's layout that hold files no row refers to. A unit that is (or holds) an owner's or
    an experiment's directory is never one: deleting a recognised unit removes no file that a row refers to."""
    experiments = {p for p in experiment_paths if p}
    held = ancestors({*claims, *experiments})
    units: dict[str, Unit] = {}
    for item in listing:
        if covered(item.path, claims):
            continue
        unit_path, recognised = _unit_of(item.path, experiments)
        unit = units.setdefault(unit_path, Unit(unit_path, recognised and unit_path not in held))
        unit.bytes += item.size
        unit.files += 1
        unit.newest = max(unit.newest, item.modified)
    return sorted(units.values(), key=lambda unit: unit.path)
