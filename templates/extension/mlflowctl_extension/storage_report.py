"""`storage report`: where the bytes of a tracking server are, and what `gc` would free.

Cheap on a large store: table sizes come from the database's own bookkeeping (SQLite's page count and max(rowid),
PostgreSQL's pg_class), never from COUNT(*) over metrics; the numbers that are estimates say so in `estimated`.
The artifact store is listed once (names and sizes only, nothing is read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy

from .artifact_files import ArtifactFile, ArtifactFiles
from .logs import redact
from .storage_catalog import Catalog, Row, Unit, orphan_units, read_catalog

REPORT_FORMAT_VERSION = 1
ORPHAN_GRACE_SECONDS = 24 * 3600
LARGEST_TABLES = 10
LISTED_ORPHANS = 50


def table_sizes(engine: sqlalchemy.engine.Engine) -> tuple[int | None, list[dict[str, Any]], list[str]]:
    """(database bytes, the largest tables with rows and bytes, which of those numbers are estimates)."""
    dialect = engine.dialect.name
    names = sorted(sqlalchemy.inspect(engine).get_table_names())
    tables: list[dict[str, Any]] = []
    total: int | None = None
    estimated: list[str] = []
    with engine.connect() as conn:
        if dialect == "sqlite":
            page_size = conn.execute(sqlalchemy.text("PRAGMA page_size")).scalar() or 0
            pages = conn.execute(sqlalchemy.text("PRAGMA page_count")).scalar() or 0
            total = int(page_size) * int(pages)
            for name in names:
                # max(rowid) is a B-tree descent, not a scan: exact until rows are deleted, an upper bound after.
                rows = conn.execute(sqlalchemy.text(f'SELECT coalesce(max(rowid), 0) FROM "{name}"')).scalar()
                tables.append({"name": name, "rows": int(rows or 0), "bytes": None})
            estimated.append("database.tables.rows")
        elif dialect == "postgresql":
            total = int(conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())")).scalar() or 0)
            for name, tuples, size in conn.execute(
                sqlalchemy.text(
                    "SELECT relname, reltuples, pg_total_relation_size(oid) FROM pg_class "
                    "WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"
                )
            ):
                if name in names:
                    # reltuples is -1 on a table never vacuumed or analysed.
                    tables.append({"name": name, "rows": int(tuples) if tuples >= 0 else None, "bytes": int(size)})
            estimated.append("database.tables.rows")
        elif dialect == "mssql":
            for name, rows, size in conn.execute(
                sqlalchemy.text(
                    "SELECT t.name, SUM(CASE WHEN p.index_id IN (0, 1) THEN p.row_count ELSE 0 END), "
                    "SUM(p.used_page_count) * 8192 FROM sys.dm_db_partition_stats p "
                    "JOIN sys.tables t ON t.object_id = p.object_id GROUP BY t.name"
                )
            ):
                tables.append({"name": name, "rows": int(rows or 0), "bytes": int(size or 0)})
            total = sum(table["bytes"] or 0 for table in tables)
    tables.sort(key=lambda table: (-(table["rows"] or 0), table["name"]))
    return total, tables[:LARGEST_TABLES], estimated


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def view(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


def _owners(catalog: Catalog) -> tuple[dict[str, Row], dict[str, Row]]:
    rows: dict[str, Row] = {}
    experiments: dict[str, Row] = {}
    for row in (*catalog.live, *catalog.deleted):
        if row.path is None:
            continue
        (experiments if row.kind == "experiment" else rows)[row.path] = row
    return rows, experiments


def _owner_of(path: str, owners: dict[str, Row]) -> Row | None:
    parts = path.split("/")
    for depth in range(len(parts), 0, -1):
        found = owners.get("/".join(parts[:depth]))
        if found is not None:
            return found
    return None


def oldest_traces(engine: sqlalchemy.engine.Engine, experiment_ids: list[str]) -> int | None:
    """The oldest trace's time: one indexed lookup per experiment (trace_info is indexed by experiment and time)."""
    if "trace_info" not in sqlalchemy.inspect(engine).get_table_names():
        return None
    oldest: int | None = None
    with engine.connect() as conn:
        for experiment_id in experiment_ids:
            found = conn.execute(
                sqlalchemy.text("SELECT min(timestamp_ms) FROM trace_info WHERE experiment_id = :id"),
                {"id": int(experiment_id)},
            ).scalar()
            if found is not None and (oldest is None or found < oldest):
                oldest = int(found)
    return oldest


def build_report(
    engine: sqlalchemy.engine.Engine,
    files: ArtifactFiles,
    grace_seconds: float = ORPHAN_GRACE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    now = time.time() if now is None else now
    total, tables, estimated = table_sizes(engine)
    catalog = read_catalog(engine, files)
    listing: list[ArtifactFile] = list(files.walk())
    owners, experiment_owners = _owners(catalog)
    deleted_keys = {(row.kind, row.id) for row in catalog.deleted}
    deleted = {kind: Tally() for kind in ("experiments", "runs", "loggedModels", "modelVersions")}
    plural = {
        "experiment": "experiments",
        "run": "runs",
        "loggedModel": "loggedModels",
        "modelVersion": "modelVersions",
    }
    for row in catalog.deleted:
        deleted[plural[row.kind]].count += 1
    by_experiment: dict[str, Tally] = {}
    traces = Tally()
    artifact_bytes = 0
    for item in listing:
        artifact_bytes += item.size
        owner = _owner_of(item.path, owners)
        experiment = _owner_of(item.path, experiment_owners)
        if experiment is not None:
            tally = by_experiment.setdefault(experiment.id, Tally())
            tally.count += 1
            tally.bytes += item.size
            if (experiment.kind, experiment.id) in deleted_keys:
                deleted["experiments"].bytes += item.size
        if owner is None:
            continue
        if owner.kind == "trace":
            traces.bytes += item.size
        if (owner.kind, owner.id) in deleted_keys:
            deleted[plural[owner.kind]].bytes += item.size
    trace_rows = next((table["rows"] for table in tables if table["name"] == "trace_info"), None)
    if trace_rows is None and "trace_info" in catalog.tables:
        trace_rows = sum(1 for row in catalog.live if row.kind == "trace")
    traces.count = trace_rows or 0
    units = orphan_units(listing, catalog.claims(), catalog.experiments.values())
    orphans = [unit for unit in units if unit.recognised]
    unrecognised = [unit for unit in units if not unit.recognised]
    names = _experiment_names(engine)
    oldest_deleted_run = min((row.at_ms for row in catalog.deleted if row.kind == "run" and row.at_ms), default=None)
    return {
        "reportVersion": REPORT_FORMAT_VERSION,
        "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "database": {"dialect": engine.dialect.name, "bytes": total, "largestTables": tables},
        "artifacts": {
            "destination": redact(files.destination),
            "bytes": artifact_bytes,
            "files": len(listing),
            "byExperiment": sorted(
                (
                    {
                        "experimentId": experiment_id,
                        "name": names.get(experiment_id, (None, None))[0],
                        "lifecycleStage": names.get(experiment_id, (None, None))[1],
                        "bytes": tally.bytes,
                        "files": tally.count,
                    }
                    for experiment_id, tally in by_experiment.items()
                ),
                key=lambda entry: (-entry["bytes"], entry["experimentId"]),
            ),
        },
        "traces": {
            **traces.view(),
            "oldestMs": oldest_traces(engine, list(catalog.experiments)),
        },
        "deleted": {
            **{kind: tally.view() for kind, tally in deleted.items()},
            "oldestDeletedRunMs": oldest_deleted_run,
        },
        "orphans": {
            "count": len(orphans),
            "bytes": sum(unit.bytes for unit in orphans),
            "pastGrace": sum(1 for unit in orphans if unit.newest < now - grace_seconds),
            "graceSeconds": grace_seconds,
            "listed": [_unit_view(unit) for unit in orphans[:LISTED_ORPHANS]],
            # Files no row refers to outside MLflow's layout: reported, never deleted.
            "unrecognised": {
                "count": len(unrecognised),
                "bytes": sum(unit.bytes for unit in unrecognised),
                "listed": [_unit_view(unit) for unit in unrecognised[:LISTED_ORPHANS]],
            },
        },
        "estimated": [*estimated, *(["traces.count"] if trace_rows is not None and estimated else [])],
    }


def _unit_view(unit: Unit) -> dict[str, Any]:
    return {"path": unit.path, "bytes": unit.bytes, "files": unit.files, "modifiedMs": int(unit.newest * 1000)}


def _experiment_names(engine: sqlalchemy.engine.Engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        return {
            str(experiment_id): (name, stage)
            for experiment_id, name, stage in conn.execute(
                sqlalchemy.text("SELECT experiment_id, name, lifecycle_stage FROM experiments")
            )
        }
