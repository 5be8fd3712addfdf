"""How many requests MLflow handles at once in one process, and the database pool that serves them.

Connect sends up to `max_conns_per_process` (20 by default) concurrent requests to one process, and local storage
runs exactly one. MLflow's handlers are synchronous: its FastAPI app runs the Flask handlers on anyio's worker
threads (40 by default), a WSGI host on its own threads. Two facts decide the settings:

- Some handlers hold two pooled connections at once (create_run and log_batch open a second session inside the
  first). With SQLAlchemy's default pool (5 + 10 overflow, 30 s wait) fifteen such requests each hold one
  connection and wait for a second: nothing moves until the pool times out, and requests fail with "QueuePool limit
  ... reached". The pool must cover two connections per handler that can run at once.
- SQLite takes one writer at a time, and a writer that finds it taken polls (MLflow sets a 20 s busy timeout on
  every session) rather than queueing. More handlers than a few at once only poll the write lock, in no order: the
  slowest requests wait longest (measured with bench/load.mjs, 32 clients on one process: 10 at once, p99 3.1-3.4 s;
  4 at once, p99 1.9-2.1 s and the same throughput). One process has one interpreter lock, so the handlers that
  wait cost nothing in throughput.

So the extension bounds the handlers that run at once, in both app modes (the anyio limiter on MLflow's event loop;
a semaphore around the Flask app under a WSGI host, which queues the host's threads in arrival order), and sizes
the pool for twice that bound or for a WSGI host's threads, whichever is larger. An operator's own values win.
"""

from __future__ import annotations

from typing import Any, Mapping

# Handlers at once: SQLite serialises writes, a server database does not.
SQLITE_HANDLER_THREADS = 4
SERVER_DB_HANDLER_THREADS = 20
# The WSGI hosts that run python-api content (Connect's, gunicorn gthread in dev up and the tests) run up to this
# many requests at once: Connect's max_conns_per_process default.
WSGI_HOST_THREADS = 20
THREADS_VARIABLE = "MLFLOWCTL_HANDLER_THREADS"
POOL_SIZE_VARIABLE = "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"
MAX_OVERFLOW_VARIABLE = "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"
POOL_CLASS_VARIABLE = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"
# Connections kept open when idle; the rest of the pool opens under load and closes when returned.
IDLE_POOL_SIZE = 10


def handler_threads(dialect: str, env: Mapping[str, str]) -> int:
    """How many of MLflow's handlers may run at once (MLFLOWCTL_HANDLER_THREADS overrides)."""
    raw = env.get(THREADS_VARIABLE, "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return SQLITE_HANDLER_THREADS if dialect == "sqlite" else SERVER_DB_HANDLER_THREADS


def pool_environment(dialect: str, env: Mapping[str, str]) -> dict[str, str]:
    """MLflow's pool variables (read by every MLflow version this extension serves), unless the operator set them:
    room for two connections per request that can run at once. MLflow ignores a value of 0."""
    # A pool class of the operator's own (NullPool takes no size: SQLAlchemy refuses the arguments) is left alone.
    if env.get(POOL_SIZE_VARIABLE) or env.get(MAX_OVERFLOW_VARIABLE) or env.get(POOL_CLASS_VARIABLE):
        return {}
    connections = 2 * max(handler_threads(dialect, env), WSGI_HOST_THREADS)
    return {POOL_SIZE_VARIABLE: str(IDLE_POOL_SIZE), MAX_OVERFLOW_VARIABLE: str(connections - IDLE_POOL_SIZE)}


def limit_handler_threads(threads: int) -> Any:
    """Bounds the anyio worker threads of the running event loop (per loop; call it on the loop that serves
    MLflow's FastAPI app) and returns the limiter. MLflow runs its Flask handlers through anyio.to_thread with the
    default limiter."""
    import anyio.to_thread

    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = threads
    return limiter
