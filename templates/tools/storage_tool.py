"""`storage report` and `gc` for a self-hosted store (a database URL and its artifact store), with the extension's
own code: what the ops endpoint answers for a deployment, this prints for a store reached from here. Runs in a
managed venv with MLflow installed, so rows are deleted by MLflow's own store code.

Usage: storage_tool.py report|gc ARTIFACTS [GC_OPTIONS_JSON]
  The database URL comes from MLFLOWCTL_STORAGE_DB_URL (never argv: it may hold a password).
  ARTIFACTS is where the server stores proxied artifacts (its --artifacts-destination).
Prints JSON lines: the report as one line; gc's events ("plan", "progress", "result" or "error") one per line.
Exit 3 when another gc holds the store's lock, 1 on an error (its reason on stderr).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# The extension's modules (templates/extension), not copies: the same plan, the same lock, the same deletion order.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extension"))
from mlflowctl_extension.artifact_files import open_artifact_files  # noqa: E402
from mlflowctl_extension.logs import redact  # noqa: E402
from mlflowctl_extension.storage_gc import GcBusy, GcOptions, gc_lock, run_gc  # noqa: E402
from mlflowctl_extension.storage_report import build_report  # noqa: E402


def main() -> int:
    mode, artifacts = sys.argv[1], sys.argv[2]
    url = os.environ["MLFLOWCTL_STORAGE_DB_URL"]
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    files = open_artifact_files(artifacts)
    try:
        if mode == "report":
            print(json.dumps(build_report(engine, files)), flush=True)
            return 0
        if mode != "gc":
            raise SystemExit(f"unknown mode {mode}")
        options = GcOptions.from_json(json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}"))
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        with gc_lock(engine):
            store = SqlAlchemyStore(url, artifacts)
            for event in run_gc(engine, store, files, options):
                print(json.dumps(event), flush=True)
        return 0
    except GcBusy as exc:
        sys.stderr.write(f"{exc}\n")
        return 3
    except Exception as exc:  # noqa: BLE001 - reported to the CLI, first line only
        sys.stderr.write(redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") + "\n")
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
