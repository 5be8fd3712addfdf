"""The checks of `mlflowctl fleet doctor` that a scheduled report can run on Connect itself, for the MLflow
deployments it is given, and the one-page status it renders.

Everything it needs comes from the report's own Connect environment: CONNECT_SERVER and CONNECT_API_KEY (which
Connect gives rendered content: the key of the report's owner), MLFLOWCTL_MONITOR_TARGETS (GUIDs) and
MLFLOWCTL_MONITOR_OPS_TOKENS (a JSON object of GUID to ops token, set by `mlflowctl deploy-monitor` as a variable
of the content, never a file of the bundle). Standard library only: a report's environment should not depend on
more than it must.
"""

from __future__ import annotations

import html
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

TIMEOUT_SECONDS = 30.0
STATE_FILE = "mlflowctl-monitor-state.json"


@dataclass
class Check:
    name: str
    status: str  # pass, warn, fail, skip
    detail: str


@dataclass
class Deployment:
    guid: str
    name: str = ""
    url: str = ""
    checks: list[Check] = field(default_factory=list)
    stored_bytes: int | None = None

    @property
    def failing(self) -> bool:
        return any(check.status == "fail" for check in self.checks)


@dataclass
class Report:
    server: str
    generated_at: str
    deployments: list[Deployment]
    problems: list[str] = field(default_factory=list)

    @property
    def failing(self) -> int:
        return sum(1 for deployment in self.deployments if deployment.failing) + len(self.problems)


@dataclass
class Limits:
    max_backup_age_hours: float = 26.0
    max_replica_lag_seconds: float = 300.0
    min_free_percent: float = 10.0
    max_growth_percent: float = 50.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        def number(name: str, default: float) -> float:
            try:
                return float(env.get(name, "") or default)
            except ValueError:
                return default

        return cls(
            number("MLFLOWCTL_MONITOR_MAX_BACKUP_AGE_HOURS", cls.max_backup_age_hours),
            number("MLFLOWCTL_MONITOR_MAX_REPLICA_LAG_SECONDS", cls.max_replica_lag_seconds),
            number("MLFLOWCTL_MONITOR_MIN_FREE_PERCENT", cls.min_free_percent),
            number("MLFLOWCTL_MONITOR_MAX_GROWTH_PERCENT", cls.max_growth_percent),
        )


class Http:
    """GET with the Connect API key; answers (status, body) and never raises on an HTTP status."""

    def __init__(self, server: str, api_key: str) -> None:
        self.server = server if server.endswith("/") else server + "/"
        self._key = api_key
        self._tls = ssl.create_default_context()

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers={"Authorization": f"Key {self._key}", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=self._tls) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            return 0, str(getattr(error, "reason", error)).encode()


def _age_hours(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    try:
        return (now - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) / 3600
    except ValueError:
        return None


def check_deployment(
    http: Http, guid: str, ops_token: str | None, limits: Limits, previous: Mapping[str, Any], now: float
) -> Deployment:
    deployment = Deployment(guid)
    status, body = http.get(f"{http.server}__api__/v1/content/{guid}")
    if status != 200:
        reason = {404: "no such content", 403: "the report's owner may not see it"}.get(status, f"HTTP {status}")
        deployment.checks.append(Check("content", "fail", f"Connect: {reason}"))
        return deployment
    content = json.loads(body)
    deployment.name = content.get("title") or content.get("name") or guid
    deployment.url = content.get("content_url") or f"{http.server}content/{guid}/"
    base = deployment.url if deployment.url.endswith("/") else deployment.url + "/"
    status, body = http.get(f"{base}health")
    deployment.checks.append(
        Check("health", "pass", "MLflow answers")
        if status == 200
        else Check("health", "fail", f"/health answered {status or 'nothing'}: {_reason(body)}")
    )
    if not ops_token:
        deployment.checks.append(Check("status", "skip", "no ops token for this deployment"))
        return deployment
    status, body = http.get(f"{base}_mlflowctl/status", {"X-Mlflowctl-Ops-Token": ops_token})
    if status != 200:
        deployment.checks.append(
            Check("status", "fail", f"the ops status answered {status or 'nothing'}: {_reason(body)}")
        )
        return deployment
    ops = json.loads(body)
    schema = ops.get("schemaState")
    deployment.checks.append(
        Check("schema", "pass", f"at {ops.get('dbRevision')}")
        if schema == "current"
        else Check("schema", "fail", f"{schema}: {ops.get('dbRevision')} (MLflow expects {ops.get('expectedHead')})")
    )
    deployment.checks.append(_backup_check(ops, limits, now))
    replica = ops.get("replica")
    if replica:
        lag = replica.get("lagSeconds")
        if replica.get("lastError"):
            deployment.checks.append(Check("replica", "fail", str(replica["lastError"])))
        elif lag is None or lag > limits.max_replica_lag_seconds:
            deployment.checks.append(
                Check("replica", "fail", f"lag {lag} s (limit {limits.max_replica_lag_seconds:g} s)")
            )
        else:
            deployment.checks.append(Check("replica", "pass", f"lag {lag:.1f} s"))
    deployment.checks.extend(_storage_checks(deployment, ops, limits, previous.get(guid)))
    return deployment


def _backup_check(ops: Mapping[str, Any], limits: Limits, now: float) -> Check:
    if ops.get("storageMode") != "local":
        return Check("backup", "skip", "external storage is backed up from its database")
    snapshot = ops.get("lastSnapshot") or {}
    age = _age_hours(snapshot.get("at"), now)
    if age is None:
        return Check("backup", "fail", "no backup has taken a snapshot of this deployment")
    if age > limits.max_backup_age_hours:
        return Check("backup", "fail", f"the last backup is {age:.1f} h old (limit {limits.max_backup_age_hours:g} h)")
    return Check("backup", "pass", f"{age:.1f} h ago")


def _storage_checks(deployment: Deployment, ops: Mapping[str, Any], limits: Limits, before: int | None) -> list[Check]:
    checks: list[Check] = []
    free, total = ops.get("dataDirFreeBytes"), ops.get("dataDirTotalBytes")
    if free is not None and total:
        percent = 100 * free / total
        checks.append(
            Check("free space", "pass" if percent >= limits.min_free_percent else "fail", f"{percent:.0f}% free")
        )
    sizes = [ops.get("databaseBytes"), ops.get("artifactBytes")]
    if all(size is None for size in sizes):
        return checks
    stored = sum(size or 0 for size in sizes)
    deployment.stored_bytes = stored
    if before:
        growth = 100 * (stored - before) / before
        status = "fail" if growth > limits.max_growth_percent else "pass"
        checks.append(Check("growth", status, f"{_size(stored)} ({growth:+.0f}% since the last run)"))
    else:
        checks.append(Check("growth", "pass", f"{_size(stored)} (first run: nothing to compare)"))
    return checks


def _reason(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        # The extension's 503 while starting or refused: {"error": {"code", "message"}}; its ops errors are flat.
        text = str(
            (error.get("message") if isinstance(error, dict) else None) or payload.get("message") or error or text
        )
    return (text[:297] + "...") if len(text) > 300 else (text or "no reason given")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _state_path(env: Mapping[str, str]) -> Path | None:
    data_dir = env.get("CONNECT_CONTENT_DATA_DIR")
    return Path(data_dir) / STATE_FILE if data_dir else None


def run(env: Mapping[str, str] | None = None, now: float | None = None) -> Report:
    """Checks every target; keeps each one's stored bytes for the next run's growth check."""
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    server, api_key = env.get("CONNECT_SERVER", ""), env.get("CONNECT_API_KEY", "")
    generated = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = Report(server, generated, [])
    if not server or not api_key:
        report.problems.append("CONNECT_SERVER or CONNECT_API_KEY is not set: Connect gives them to rendered content.")
        return report
    targets = [guid.strip() for guid in env.get("MLFLOWCTL_MONITOR_TARGETS", "").split(",") if guid.strip()]
    if not targets:
        report.problems.append("MLFLOWCTL_MONITOR_TARGETS names no deployment: run mlflowctl deploy-monitor again.")
        return report
    try:
        tokens = json.loads(env.get("MLFLOWCTL_MONITOR_OPS_TOKENS") or "{}")
    except ValueError:
        tokens = {}
        report.problems.append("MLFLOWCTL_MONITOR_OPS_TOKENS is not JSON: the ops status cannot be read.")
    state_path = _state_path(env)
    previous: dict[str, Any] = {}
    if state_path and state_path.exists():
        try:
            previous = json.loads(state_path.read_text())
        except (OSError, ValueError):
            previous = {}
    http = Http(server, api_key)
    limits = Limits.from_env(env)

    def checked(guid: str) -> Deployment:
        # One deployment's surprise (a proxy's login page instead of JSON) must not silence the whole report.
        try:
            return check_deployment(http, guid, tokens.get(guid), limits, previous, now)
        except Exception as exc:  # noqa: BLE001 - reported as that deployment's failure
            return Deployment(guid, checks=[Check("answer", "fail", f"unreadable answer: {type(exc).__name__}")])

    with ThreadPoolExecutor(max_workers=4) as pool:
        report.deployments = list(pool.map(checked, targets))
    if state_path:
        sizes = {d.guid: d.stored_bytes for d in report.deployments if d.stored_bytes is not None}
        try:
            state_path.write_text(json.dumps({**previous, **sizes}))
        except OSError:
            pass  # the next run compares with an older run, or with none
    return report


def subject(report: Report) -> str:
    if report.failing == 0:
        return f"MLflow deployments: all {len(report.deployments)} healthy"
    return f"MLflow deployments: {report.failing} failing"


_MARKS = {"pass": ("✓", "#1a7f37"), "warn": ("!", "#9a6700"), "fail": ("✗", "#cf222e"), "skip": ("–", "#6e7781")}


def render_html(report: Report) -> str:
    """One page, inline styles only (it is also the email's body)."""
    esc = html.escape
    healthy = sum(1 for d in report.deployments if not d.failing)
    colour = "#cf222e" if report.failing else "#1a7f37"
    parts = [
        '<div style="font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 960px;">',
        f'<h2 style="margin: 0 0 4px;">MLflow deployments on {esc(report.server)}</h2>',
        f'<p style="margin: 0 0 12px; color: #57606a;">Checked {esc(report.generated_at)} by mlflowctl\'s monitor.</p>',
        f'<p style="font-size: 18px; color: {colour}; margin: 0 0 16px;"><b>{healthy} healthy, '
        f"{len(report.deployments) - healthy} failing</b></p>",
    ]
    for problem in report.problems:
        parts.append(f'<p style="color: #cf222e;"><b>The monitor itself:</b> {esc(problem)}</p>')
    for deployment in report.deployments:
        mark, tone = ("✗", "#cf222e") if deployment.failing else ("✓", "#1a7f37")
        title = esc(deployment.name or deployment.guid)
        link = f'<a href="{esc(deployment.url)}">{title}</a>' if deployment.url else title
        parts.append(
            f'<h3 style="margin: 16px 0 4px; color: {tone};">{mark} {link} '
            f'<span style="font-weight: normal; color: #57606a; font-size: 13px;">{esc(deployment.guid)}</span></h3>'
        )
        parts.append('<table style="border-collapse: collapse; width: 100%; font-size: 14px;">')
        for check in deployment.checks:
            symbol, shade = _MARKS.get(check.status, ("?", "#6e7781"))
            parts.append(
                '<tr style="border-top: 1px solid #d0d7de;">'
                f'<td style="padding: 4px 8px; color: {shade}; width: 1.5em;">{symbol}</td>'
                f'<td style="padding: 4px 8px; width: 8em;">{esc(check.name)}</td>'
                f'<td style="padding: 4px 8px; color: #24292f;">{esc(check.detail)}</td></tr>'
            )
        parts.append("</table>")
    parts.append("</div>")
    return "\n".join(parts)
