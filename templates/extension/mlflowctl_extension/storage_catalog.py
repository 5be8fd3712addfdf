"""What the database says about the artifact store, for `storage report` and `gc`: which rows are deleted but not
purged, which paths the remaining rows refer to, and so which directories nothing refers to (orphans).

Every query here reads the small tables (experiments, runs, logged_models, trace_info, trace_tags, model_versions)
and none reads metrics, which holds nearly all the rows of a busy store.
"""

from __future__ import annotations

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
            for name, version, stage, storage, source in conn.execute(
                sqlalchemy.text("SELECT name, version, current_stage, storage_location, source FROM model_versions")
            ):
                path = files.relative(storage) or _resolve_source(source, files, run_paths, model_paths)
                row = Row("modelVersion", f"{name}/{version}", None, path)
                (catalog.deleted if stage == DELETED_MODEL_VERSION else catalog.live).append(row)
    return catalog


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


def covered(path: str, owned: set[str]) -> bool:
    """True when `path` lies in one of the `owned` directories (or is one)."""
    parts = path.split("/")
    return any("/".join(parts[:depth]) in owned for depth in range(1, len(parts) + 1))


@dataclass
class Unit:
    """A directory (or a lone file) of the artifact store that nothing refers to."""

    path: str
    bytes: int = 0
    files: int = 0
    newest: float = 0.0


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every path in `paths` and every directory above one."""
    found: set[str] = set()
    for path in paths:
        parts = path.split("/")
        found.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return found


def orphan_units(
    listing: Iterable[ArtifactFile], claims: set[str], experiment_paths: Iterable[str | None]
) -> list[Unit]:
    """The shortest paths that hold unclaimed files and are neither an owner's directory, nor an experiment's, nor an
    ancestor of one: deleting such a path removes no file that a row refers to."""
    held = ancestors({*claims, *(p for p in experiment_paths if p)})
    units: dict[str, Unit] = {}
    for item in listing:
        parts = item.path.split("/")
        if covered(item.path, claims):
            continue
        unit_path = next(
            ("/".join(parts[:depth]) for depth in range(1, len(parts) + 1) if "/".join(parts[:depth]) not in held),
            None,
        )
        if unit_path is None:
            continue
        unit = units.setdefault(unit_path, Unit(unit_path))
        unit.bytes += item.size
        unit.files += 1
        unit.newest = max(unit.newest, item.modified)
    return sorted(units.values(), key=lambda unit: unit.path)
