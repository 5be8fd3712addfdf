"""Entrypoint that Posit Connect imports (`app:app`).

Connect only imports this module, so startup (configuration, controlled schema migration) runs here,
once per process and before the first request, never as a side effect of a request.
"""

from mlflowctl_extension.server import build_app

app = build_app()
