#!/usr/bin/env python3
"""Build an MLflow DB-migration catalog from the released MLflow wheels on PyPI.

Stdlib only. Nothing is installed or imported from MLflow: each wheel is downloaded
(cached under --cache), opened with zipfile, and the alembic revision files are parsed
with ``ast``.

For every final release in [--min-version, newest final] (or --max-version) it records:
  * tracking migrations  mlflow/store/db_migrations/versions/*.py
  * auth-app migrations  mlflow/server/auth/db/migrations/versions/*.py
  * Requires-Python from the wheel's *.dist-info/METADATA
  * the head(s) of each chain

Usage:
  python3 scripts/generate-migration-catalog.py --out catalog/mlflow-migrations.json [--cache DIR] [--jobs 2]
                                 [--min-version 1.30.0] [--max-version X.Y.Z] [--offline]
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urljoin

DEFAULT_JSON_URL = "https://pypi.org/pypi/mlflow/json"
TRACKING_DIR = "mlflow/store/db_migrations/versions/"
AUTH_DIR = "mlflow/server/auth/db/migrations/versions/"
USER_AGENT = "mlflowctl-migration-catalog/1 (urllib)"

# --------------------------------------------------------------------------- versions
# Hand-rolled subset of PEP 440: N(.N)*[{a|b|rc}N][.postN][.devN]. Anything else is
# reported as "unparseable" and skipped.
_VER_RE = re.compile(
    r"^v?(?P<rel>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre_l>a|b|rc|alpha|beta|c|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev>\d*))?$",
    re.IGNORECASE,
)
_PRE_NORM = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}
_PRE_ORDER = {"a": 0, "b": 1, "rc": 2}
_INF = float("inf")


class Ver:
    __slots__ = ("text", "release", "pre", "post", "dev", "key")

    def __init__(self, text: str):
        m = _VER_RE.match(text.strip())
        if not m:
            raise ValueError(f"unparseable version {text!r}")
        self.text = text
        rel = tuple(int(x) for x in m["rel"].split("."))
        while len(rel) > 1 and rel[-1] == 0:  # 1.0 == 1.0.0
            rel = rel[:-1]
        self.release = rel
        pl = m["pre_l"]
        self.pre = None
        if pl:
            pl = _PRE_NORM.get(pl.lower(), pl.lower())
            self.pre = (pl, int(m["pre_n"] or 0))
        self.post = int(m["post"] or 0) if m["post"] is not None else None
        self.dev = int(m["dev"] or 0) if m["dev"] is not None else None
        # PEP 440 sort key
        if self.pre is None and self.post is None and self.dev is not None:
            pre_k = (-1, 0)  # X.Y.devN sorts before X.YaN
        elif self.pre is None:
            pre_k = (_INF, 0)
        else:
            pre_k = (_PRE_ORDER[self.pre[0]], self.pre[1])
        post_k = -1 if self.post is None else self.post
        dev_k = _INF if self.dev is None else self.dev
        self.key = (rel, pre_k, post_k, dev_k)

    @property
    def is_final(self) -> bool:  # post-releases count as final, pre/dev do not
        return self.pre is None and self.dev is None

    def __lt__(self, o):
        return self.key < o.key

    def __le__(self, o):
        return self.key <= o.key

    def __eq__(self, o):
        return isinstance(o, Ver) and self.key == o.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return self.text


# --------------------------------------------------------------------------- http
def _get(url: str, timeout: float = 120.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def fetch_index(json_url: str, cache_dir: str, offline: bool) -> dict:
    cached = os.path.join(cache_dir, "_pypi_index.json")
    if offline:
        with open(cached, encoding="utf-8") as f:
            return json.load(f)
    raw = _get(json_url)
    data = json.loads(raw)
    data["_fetched_from"] = json_url
    tmp = cached + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, cached)
    return data


def download_wheel(url: str, dest: str, size: int | None, sha256: str | None, retries: int = 3):
    """Download to dest (atomic rename). Returns (bytes_downloaded, seconds, cache_hit)."""
    if os.path.exists(dest) and (size is None or os.path.getsize(dest) == size):
        return 0, 0.0, True
    t0 = time.monotonic()
    last = None
    for attempt in range(1, retries + 1):
        tmp = f"{dest}.part{os.getpid()}"
        try:
            h = hashlib.sha256()
            n = 0
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=300) as r, open(tmp, "wb") as out:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
            if size is not None and n != size:
                raise IOError(f"size mismatch {n} != {size}")
            if sha256 and h.hexdigest() != sha256:
                raise IOError("sha256 mismatch")
            os.replace(tmp, dest)
            return n, time.monotonic() - t0, False
        except Exception as e:  # noqa: BLE001
            last = e
            try:
                os.remove(tmp)
            except OSError:
                pass
            time.sleep(2 * attempt)
    raise RuntimeError(f"download failed after {retries} attempts: {url}: {last}")


# --------------------------------------------------------------------------- release selection
def select_releases(index: dict, min_v: Ver, max_v: Ver | None):
    """Return (chosen: list[(Ver, file_info)], skipped: list[dict], newest_final: Ver)."""
    parsed = []
    skipped = []
    for text, files in index.get("releases", {}).items():
        try:
            parsed.append((Ver(text), files))
        except ValueError:
            skipped.append({"version": text, "reason": "unparseable version (not PEP 440 subset)"})
    finals_with_files = [v for v, files in parsed if v.is_final and files]
    newest = max(finals_with_files) if finals_with_files else None
    upper = max_v or newest
    chosen = []
    for v, files in sorted(parsed, key=lambda p: p[0].key):
        if v < min_v or (upper is not None and upper < v):
            continue
        if not v.is_final:
            skipped.append({"version": v.text, "reason": "pre-release" if v.pre else "dev release"})
            continue
        if not files:
            skipped.append({"version": v.text, "reason": "no files uploaded"})
            continue
        if all(f.get("yanked") for f in files):
            r = files[0].get("yanked_reason")
            skipped.append({"version": v.text, "reason": "yanked" + (f": {r}" if r else " (no reason given)")})
            continue
        wheels = [f for f in files if f.get("packagetype") == "bdist_wheel"]
        if not wheels:
            skipped.append({"version": v.text, "reason": "no wheel (sdist only)"})
            continue
        live = [f for f in wheels if not f.get("yanked")]
        if not live:
            skipped.append({"version": v.text, "reason": "wheel yanked"})
            continue
        # prefer the pure-python wheel
        live.sort(key=lambda f: (not f["filename"].endswith("-py3-none-any.whl"), f["filename"]))
        chosen.append((v, live[0]))
    skipped.sort(key=lambda s: _safe_key(s["version"]))
    return chosen, skipped, newest


def _safe_key(text):
    try:
        return (0, Ver(text).key)
    except ValueError:
        return (1, text)


# --------------------------------------------------------------------------- migration parsing
DIALECT_NAMES = {"mssql", "mysql", "sqlite", "postgresql", "postgres", "oracle", "mariadb"}
# mlflow.store.db.db_types constants
DB_TYPE_CONSTS = {"MSSQL": "mssql", "MYSQL": "mysql", "SQLITE": "sqlite", "POSTGRES": "postgresql"}
BIG_TABLES = {"metrics", "params", "tags", "latest_metrics", "runs", "spans"}
# ORM class -> table, so `SqlMetric.__tablename__` resolves
MODEL_TABLES = {
    "SqlMetric": "metrics", "SqlParam": "params", "SqlTag": "tags",
    "SqlLatestMetric": "latest_metrics", "SqlRun": "runs", "SqlSpan": "spans",
}
# op name -> position of the table argument (or kw name)
HEAVY_OPS = {
    "batch_alter_table": (0, "table_name"),
    "create_index": (1, "table_name"),
    "alter_column": (0, "table_name"),
}
_SQL_UPDATE_RE = re.compile(r"\bUPDATE\s+[`\"\[]?(\w+)", re.IGNORECASE)


def _literal(node):
    try:
        v = ast.literal_eval(node)
    except Exception:  # noqa: BLE001
        return ("<non-literal>", ast.unparse(node))
    if isinstance(v, (tuple, list)):
        return list(v)
    return v


def _norm_dialect(s: str) -> str:
    s = s.lower()
    return "postgresql" if s == "postgres" else s


class _Scan(ast.NodeVisitor):
    def __init__(self, model_tables: dict[str, str] | None = None):
        # ORM class -> table, read from the same wheel (migrations say `SqlTraceInfo.__tablename__`)
        self.model_tables = {**MODEL_TABLES, **(model_tables or {})}
        self.env: dict[str, set[str]] = {}  # name -> possible table names
        self.dialects: set[str] = set()
        self.dialect_attr = False
        self.heavy: set[str] = set()
        self.creates: set[str] = set()  # tables made by op.create_table (a backup must know them)
        self.calls: list[ast.Call] = []
        self.strings: list[str] = []

    # ---- pass 1: bindings
    def bind(self, tree):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                tabs = self._tables(node.value, use_env=False)
                if tabs:
                    for t in node.targets:
                        if isinstance(t, ast.Name):
                            self.env.setdefault(t.id, set()).update(tabs)
            elif isinstance(node, (ast.For, ast.comprehension)):
                tgt, it = node.target, node.iter
                if isinstance(tgt, ast.Name) and isinstance(it, (ast.List, ast.Tuple, ast.Set)):
                    vals = {e.value for e in it.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                    if vals:
                        self.env.setdefault(tgt.id, set()).update(vals)
            elif isinstance(node, ast.ClassDef):  # local ORM model: __tablename__ = "runs"
                for st in node.body:
                    if (isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in st.targets)
                            and isinstance(st.value, ast.Constant) and isinstance(st.value.value, str)):
                        self.env.setdefault(f"class:{node.name}", set()).add(st.value.value)

    def _tables(self, node, use_env=True) -> set[str]:
        if node is None:
            return set()
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.JoinedStr):
            return set()
        if isinstance(node, ast.Attribute) and node.attr == "__tablename__" and isinstance(node.value, ast.Name):
            n = node.value.id
            if use_env and f"class:{n}" in self.env:
                return set(self.env[f"class:{n}"])
            return {self.model_tables[n]} if n in self.model_tables else set()
        if isinstance(node, ast.Name) and use_env:
            return set(self.env.get(node.id, ()))
        if isinstance(node, ast.Call):  # sa.table("metrics", ...) / sa.Table(...)
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if fn in ("table", "Table") and node.args:
                return self._tables(node.args[0], use_env)
        return set()

    def _arg(self, call: ast.Call, pos: int, kw: str):
        for k in call.keywords:
            if k.arg == kw:
                return k.value
        return call.args[pos] if len(call.args) > pos else None

    # ---- pass 2
    def scan(self, tree):
        doc = ast.get_docstring(tree, clean=False)
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                for part in [node.left, *node.comparators]:
                    elts = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
                    for e in elts:
                        if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value.lower() in DIALECT_NAMES:
                            self.dialects.add(_norm_dialect(e.value))
                        elif isinstance(e, ast.Name) and e.id in DB_TYPE_CONSTS:
                            self.dialects.add(DB_TYPE_CONSTS[e.id])
                        elif isinstance(e, ast.Attribute) and e.attr in DB_TYPE_CONSTS:
                            self.dialects.add(DB_TYPE_CONSTS[e.attr])
            elif isinstance(node, ast.Attribute) and node.attr == "name" and (
                (isinstance(node.value, ast.Attribute) and node.value.attr in ("dialect", "engine"))
                or (isinstance(node.value, ast.Name) and node.value.id in ("dialect", "engine"))
            ):
                self.dialect_attr = True
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value is not doc:
                self.strings.append(node.value)
            elif isinstance(node, ast.Call):
                f = node.func
                fn = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if fn == "create_table" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "op":
                    self.creates |= self._tables(self._arg(node, 0, "table_name"))
                if fn in HEAVY_OPS:
                    # batch_op.alter_column / batch_op.create_index run inside batch_alter_table
                    # (already flagged); only count op.*-level calls here.
                    owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
                    if fn == "batch_alter_table" or owner == "op":
                        for t in self._tables(self._arg(node, *HEAVY_OPS[fn])):
                            if t in BIG_TABLES:
                                self.heavy.add(f"{fn}:{t}")
                elif fn == "update":  # sa.update(tbl) / tbl.update()
                    if isinstance(f, ast.Attribute) and not (isinstance(f.value, ast.Name) and f.value.id in ("sa", "sqlalchemy")):
                        target = f.value  # tbl.update()
                    else:
                        target = node.args[0] if node.args else None  # sa.update(tbl) / update(tbl)
                    for t in self._tables(target):
                        if t in BIG_TABLES:
                            self.heavy.add(f"update:{t}")
                elif fn in ("Session", "sessionmaker"):
                    self.heavy.add("orm-session")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sqlalchemy.dialects"):
                rest = node.module.split(".")[2:]
                if rest and rest[0] in DIALECT_NAMES:
                    self.dialects.add(_norm_dialect(rest[0]))
                for a in node.names:
                    if a.name in DIALECT_NAMES:
                        self.dialects.add(_norm_dialect(a.name))
        for s in self.strings:  # raw SQL: "UPDATE metrics SET ..."
            for t in _SQL_UPDATE_RE.findall(s):
                if t.lower() in BIG_TABLES:
                    self.heavy.add(f"update:{t.lower()}")


# Alembic operations that only add to a schema: a table, a column an older MLflow may leave out of its INSERTs, or
# a non-unique index. Anything else (a drop, an alter, a rename, a constraint on an existing table, a data
# migration) is not, nor is an operation this list does not know.
_CONTAINER_OPS = {"batch_alter_table", "get_bind", "get_context", "f", "inline_literal"}


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _column_addable(column) -> tuple[bool, str]:
    """Whether an older MLflow can insert rows without naming the column: nullable, or with a server default."""
    if not isinstance(column, ast.Call):
        return False, "a column built elsewhere"
    nullable = _keyword(column, "nullable")
    if _keyword(column, "server_default") is not None:
        return True, "server default"
    if _is_true(_keyword(column, "primary_key")):
        return False, "a primary-key column"
    if nullable is None or _is_true(nullable):
        return True, "nullable"
    return False, "NOT NULL without a server default"


def classify_schema_change(tree: ast.Module, sc: "_Scan") -> dict:
    """Reads what a migration's upgrade does (the module without its downgrade) and says whether it only adds."""
    body = ast.Module(body=[n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "downgrade")],
                      type_ignores=[])
    batch_tables: dict[str, set[str]] = {}  # `with op.batch_alter_table("runs") as batch_op` -> {"runs"}
    for node in ast.walk(body):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "batch_alter_table" and isinstance(item.optional_vars, ast.Name)):
                    batch_tables[item.optional_vars.id] = sc._tables(sc._arg(call, 0, "table_name"))
    changes: list[str] = []
    blockers: list[str] = []

    def on_new_tables(tables: set[str]) -> bool:
        return bool(tables) and tables <= sc.creates

    for node in ast.walk(body):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        name = node.func.attr
        if owner != "op" and owner not in batch_tables:
            # Data written through a connection or an ORM session changes rows an older MLflow reads.
            if name in ("execute", "bulk_save_objects", "add_all") or (owner == "session" and name in ("add", "merge")):
                blockers.append(f"{name} (data)")
            continue
        if name in _CONTAINER_OPS:
            continue
        # The table an operation works on: the batch's, or its own table argument.
        if owner in batch_tables:
            tables = batch_tables[owner]
        elif name == "create_index":
            tables = sc._tables(sc._arg(node, 1, "table_name"))
        elif name in ("create_foreign_key", "create_unique_constraint", "create_check_constraint",
                      "create_primary_key"):
            tables = sc._tables(sc._arg(node, 1, "source_table" if name == "create_foreign_key" else "table_name"))
        else:
            tables = sc._tables(sc._arg(node, 0, "table_name"))
        if name == "create_table":
            changes.append("create_table")
        elif name == "add_column":
            ok, why = _column_addable(node.args[-1] if node.args else _keyword(node, "column"))
            (changes if ok else blockers).append(f"add_column ({why})")
        elif name == "create_index":
            if _is_true(_keyword(node, "unique")) and not on_new_tables(tables):
                blockers.append("create_index (unique, on an existing table)")
            else:
                changes.append("create_index")
        elif name in ("create_foreign_key", "create_unique_constraint", "create_check_constraint",
                      "create_primary_key", "bulk_insert"):
            (changes if on_new_tables(tables) else blockers).append(
                name if on_new_tables(tables) else f"{name} (on an existing table)")
        else:
            blockers.append(name)
    if not changes and not blockers:
        changes.append("no schema operation")
    return {"additive": not blockers, "operations": sorted(set(changes)), "notAdditive": sorted(set(blockers))}


def _code_fingerprint(tree: ast.Module) -> str:
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    # top-level imports are ignored (isort/ruff re-ordering, unused-import removal); any
    # change in what is actually used shows up in the remaining code anyway
    rest = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    dumped = ast.dump(ast.Module(body=rest, type_ignores=[]))
    return hashlib.sha256(dumped.encode()).hexdigest()[:16]


def model_tables_of(src: str) -> dict[str, str]:
    """`class SqlX(Base): __tablename__ = "x"` pairs of one module."""
    found = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in item.targets) \
                        and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str):
                    found[node.name] = item.value.value
    return found


def parse_migration(src: str, filename: str, model_tables: dict[str, str] | None = None) -> dict:
    tree = ast.parse(src, filename=filename)
    doc = ast.get_docstring(tree) or ""
    message = next((ln.strip() for ln in doc.splitlines() if ln.strip()), None)
    found = {}
    for node in tree.body:  # module-level only
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for t in targets:
            if isinstance(t, ast.Name) and t.id in ("revision", "down_revision", "branch_labels", "depends_on"):
                found[t.id] = _literal(value)
    sc = _Scan(model_tables)
    sc.bind(tree)
    sc.scan(tree)
    dialects = sorted(sc.dialects)
    if sc.dialect_attr and not dialects:
        dialects = ["<dialect.name used, no literal>"]
    return {
        "revision": found.get("revision"),
        "down": found.get("down_revision"),
        "branchLabels": found.get("branch_labels"),
        "dependsOn": found.get("depends_on"),
        "message": message,
        "dialects": dialects,
        "heavy": sorted(sc.heavy),
        "creates": sorted(sc.creates),
        "has_revision_assign": "revision" in found,
        "schemaChange": classify_schema_change(tree, sc),
        # fingerprint of the code (AST without the module docstring), so reformatting,
        # comment edits and docstring edits do not count as changes
        "sha": _code_fingerprint(tree),
    }


def _downs(d):
    if d is None:
        return []
    if isinstance(d, list):
        return [x for x in d if isinstance(x, str)]
    return [d] if isinstance(d, str) else []


def read_wheel(path: str) -> dict:
    out = {"tracking": {}, "auth": {}, "requiresPython": None, "problems": []}
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        meta = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if meta:
            text = z.read(meta[0]).decode("utf-8", "replace")
            # RFC 822-style headers; folded (indented) lines, even whitespace-only ones, are
            # continuations, so only a truly empty line ends the header block.
            for line in text.replace("\r\n", "\n").split("\n"):
                if line == "":
                    break
                if line[:1] in (" ", "\t"):
                    continue
                if line.lower().startswith("requires-python:"):
                    out["requiresPython"] = line.split(":", 1)[1].strip()
        model_tables: dict[str, str] = {}
        for n in names:
            if n.startswith("mlflow/") and "/dbmodels/" in n and n.endswith(".py"):
                try:
                    model_tables.update(model_tables_of(z.read(n).decode("utf-8")))
                except SyntaxError:
                    pass  # a module that does not parse defines no tables we can use
        for chain, prefix in (("tracking", TRACKING_DIR), ("auth", AUTH_DIR)):
            for n in names:
                if not n.startswith(prefix) or not n.endswith(".py"):
                    continue
                base = n[len(prefix):]
                if "/" in base or base == "__init__.py":
                    continue
                src = z.read(n).decode("utf-8")
                try:
                    info = parse_migration(src, n, model_tables)
                except SyntaxError as e:
                    out["problems"].append(f"{chain}:{base}: syntax error {e}")
                    continue
                if not info["has_revision_assign"] or not isinstance(info["revision"], str):
                    out["problems"].append(f"{chain}:{base}: no string `revision` assignment")
                    continue
                info["file"] = base
                rev = info["revision"]
                if rev in out[chain]:
                    out["problems"].append(f"{chain}: duplicate revision {rev} in {base} and {out[chain][rev]['file']}")
                out[chain][rev] = info
    return out


def chain_heads(revs: dict) -> tuple[list[str], list[str], list[str]]:
    """Return (heads, roots, dangling down refs)."""
    referenced = set()
    dangling = []
    roots = []
    for r, info in revs.items():
        ds = _downs(info["down"])
        if not ds:
            roots.append(r)
        for d in ds:
            referenced.add(d)
            if d not in revs:
                dangling.append(f"{r}->{d}")
    heads = sorted(r for r in revs if r not in referenced)
    return heads, sorted(roots), sorted(dangling)


# --------------------------------------------------------------------------- main
def build(args) -> dict:
    os.makedirs(args.cache, exist_ok=True)
    t_index = time.monotonic()
    index = fetch_index(args.json_url, args.cache, args.offline)
    t_index = time.monotonic() - t_index
    chosen, skipped, newest = select_releases(index, Ver(args.min_version), Ver(args.max_version) if args.max_version else None)
    base_url = index.get("_fetched_from", args.json_url)

    # ---- downloads (bounded parallelism)
    jobs = max(1, min(2, args.jobs))
    paths = {}
    dl_stats = {"downloaded": 0, "cacheHits": 0, "bytes": 0, "failed": []}
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = {}
        for v, f in chosen:
            dest = os.path.join(args.cache, f["filename"])
            paths[v.text] = dest
            if args.offline:
                continue
            url = urljoin(base_url, f["url"])
            futs[ex.submit(download_wheel, url, dest, f.get("size"), f.get("digests", {}).get("sha256"))] = v.text
        for fut in as_completed(futs):
            vt = futs[fut]
            try:
                n, secs, hit = fut.result()
                if hit:
                    dl_stats["cacheHits"] += 1
                else:
                    dl_stats["downloaded"] += 1
                    dl_stats["bytes"] += n
                    if not args.quiet:
                        print(f"  downloaded {vt} {n/1e6:.1f} MB in {secs:.1f}s", file=sys.stderr)
            except Exception as e:  # noqa: BLE001
                dl_stats["failed"].append(vt)
                print(f"  FAILED {vt}: {e}", file=sys.stderr)
    dl_secs = time.monotonic() - t0

    # ---- parse
    t1 = time.monotonic()
    releases = []
    catalogs = {"tracking": {}, "auth": {}}
    history = {"tracking": {}, "auth": {}}  # rev -> list[(version, down, sha, message)]
    present = {"tracking": {}, "auth": {}}  # rev -> set(version)
    anomalies = []
    covered = []
    for v, f in chosen:
        p = paths[v.text]
        if v.text in dl_stats["failed"] or not os.path.exists(p):
            skipped.append({"version": v.text, "reason": "wheel download failed / not cached"})
            continue
        try:
            w = read_wheel(p)
        except zipfile.BadZipFile as e:
            skipped.append({"version": v.text, "reason": f"bad wheel: {e}"})
            continue
        covered.append(v)
        for prob in w["problems"]:
            anomalies.append({"type": "parse-problem", "version": v.text, "detail": prob})
        rec = {"version": v.text, "uploaded": (f.get("upload_time_iso_8601") or "")[:10] or None,
               "requiresPython": w["requiresPython"]}
        idx_rp = f.get("requires_python")
        if idx_rp and w["requiresPython"] and idx_rp.replace(" ", "") != w["requiresPython"].replace(" ", ""):
            anomalies.append({"type": "requires-python-mismatch", "version": v.text,
                              "detail": f"METADATA {w['requiresPython']!r} vs index {idx_rp!r}"})
        for chain in ("tracking", "auth"):
            revs = w[chain]
            key = "trackingHead" if chain == "tracking" else "authHead"
            if not revs:
                rec[key] = None
            else:
                heads, roots, dangling = chain_heads(revs)
                rec[key] = heads[0] if len(heads) == 1 else heads
                if len(heads) != 1:
                    anomalies.append({"type": "multiple-heads" if heads else "no-head", "chain": chain,
                                      "version": v.text, "detail": heads})
                if len(roots) != 1:
                    anomalies.append({"type": "multiple-roots", "chain": chain, "version": v.text, "detail": roots})
                if dangling:
                    anomalies.append({"type": "dangling-down-revision", "chain": chain, "version": v.text,
                                      "detail": dangling})
            rec["trackingRevisions" if chain == "tracking" else "authRevisions"] = len(revs)
            for rev, info in revs.items():
                history[chain].setdefault(rev, []).append((v.text, info["down"], info["sha"], info["message"]))
                present[chain].setdefault(rev, set()).add(v.text)
                entry = {"down": info["down"], "message": info["message"]}
                if info["branchLabels"] is not None:
                    entry["branchLabels"] = info["branchLabels"]
                if info["dependsOn"] is not None:
                    entry["dependsOn"] = info["dependsOn"]
                entry.update({"file": info["file"], "dialects": info["dialects"], "heavy": info["heavy"]})
                if info["creates"]:
                    entry["creates"] = info["creates"]
                change = info["schemaChange"]
                entry["additive"] = change["additive"]
                entry["operations"] = change["operations"]
                if change["notAdditive"]:
                    entry["notAdditive"] = change["notAdditive"]
                cat = catalogs[chain]
                if rev not in cat:
                    cat[rev] = {**entry, "firstRelease": v.text}
                else:  # keep firstRelease, refresh content from the newer release
                    first = cat[rev]["firstRelease"]
                    cat[rev] = {**entry, "firstRelease": first}
        releases.append(rec)

    # ---- cross-release checks
    covered_texts = [v.text for v in covered]
    for chain in ("tracking", "auth"):
        for rev, hist in history[chain].items():
            downs = {}
            for vt, d, _sha, _m in hist:
                downs.setdefault(json.dumps(d), []).append(vt)
            if len(downs) > 1:
                anomalies.append({"type": "down-revision-changed", "chain": chain, "revision": rev,
                                  "detail": {k: _ranges(vs, covered_texts) for k, vs in downs.items()}})
                catalogs[chain][rev]["downHistory"] = {k: _ranges(vs, covered_texts) for k, vs in downs.items()}
            msgs = {m for _v, _d, _s, m in hist}
            if len(msgs) > 1:
                catalogs[chain][rev]["messageChanged"] = True
            shas = []
            for vt, _d, sha, _m in hist:
                if not shas or shas[-1][1] != sha:
                    shas.append((vt, sha))
            if len(shas) > 1:
                catalogs[chain][rev]["codeChangedIn"] = [vt for vt, _ in shas[1:]]
            # releases after firstRelease that lack the revision
            first = catalogs[chain][rev]["firstRelease"]
            after = covered_texts[covered_texts.index(first):]
            absent = [vt for vt in after if vt not in present[chain][rev]]
            if absent:
                catalogs[chain][rev]["absentIn"] = absent
                anomalies.append({"type": "revision-missing-in-later-release", "chain": chain,
                                  "revision": rev, "detail": absent})
    parse_secs = time.monotonic() - t1

    cache_bytes = sum(os.path.getsize(os.path.join(args.cache, n)) for n in os.listdir(args.cache)
                      if n.endswith(".whl"))
    newest_rec = releases[-1] if releases else None
    return {
        "generatedAt": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "source": "PyPI wheels",
        "index": base_url,
        "range": {"min": args.min_version, "max": covered_texts[-1] if covered_texts else None,
                  "newestFinalOnIndex": newest.text if newest else None},
        "notes": [
            f"firstRelease == {covered_texts[0] if covered_texts else args.min_version} means 'in or before' that release (older releases not scanned).",
            "down/message/dialects/heavy come from the newest release containing the revision.",
            "codeChangedIn: releases whose copy of the file differs in code (AST; docstring, comments, formatting and top-level imports ignored) from the previous covered release that had it.",
            "absentIn: covered releases after firstRelease that do not ship the revision.",
            "dialects: dialect names compared against in the source (string literals, db_types constants) or sqlalchemy.dialects imports.",
            "heavy: crude hint. batch_alter_table/op.create_index/op.alter_column/UPDATE on "
            + ",".join(sorted(BIG_TABLES)) + "; orm-session = row-by-row ORM data migration.",
        ],
        "stats": {"releasesCovered": len(releases), "trackingRevisions": len(catalogs["tracking"]),
                  "authRevisions": len(catalogs["auth"]), "downloadSeconds": round(dl_secs, 1),
                  "indexFetchSeconds": round(t_index, 2), "parseSeconds": round(parse_secs, 1),
                  "downloaded": dl_stats["downloaded"], "downloadedBytes": dl_stats["bytes"],
                  "cacheHits": dl_stats["cacheHits"], "cacheBytes": cache_bytes,
                  "newest": newest_rec},
        "releases": releases,
        "tracking": catalogs["tracking"],
        "auth": catalogs["auth"],
        "skipped": sorted(skipped, key=lambda s: _safe_key(s["version"])),
        "anomalies": anomalies,
    }


def _ranges(vs, order):
    """Compress a list of versions to 'a..b' runs over the covered-release order."""
    idx = sorted(order.index(v) for v in vs)
    out, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(order[start] if start == prev else f"{order[start]}..{order[prev]}")
        if i is not None:
            start = prev = i
    return out


def dump_compact(obj: dict) -> str:
    """Top-level keys on their own lines; each release / revision / skipped entry on one line."""
    one = lambda x: json.dumps(x, ensure_ascii=False, separators=(", ", ": "))  # noqa: E731
    lines = ["{"]
    keys = list(obj)
    for i, k in enumerate(keys):
        v = obj[k]
        comma = "," if i < len(keys) - 1 else ""
        if isinstance(v, list) and v and k in ("releases", "skipped", "anomalies", "notes"):
            lines.append(f" {one(k)}: [")
            lines += [f"  {one(e)}{',' if j < len(v) - 1 else ''}" for j, e in enumerate(v)]
            lines.append(f" ]{comma}")
        elif isinstance(v, dict) and v and k in ("tracking", "auth", "stats"):
            lines.append(f" {one(k)}: {{")
            items = list(v.items())
            lines += [f"  {one(kk)}: {one(vv)}{',' if j < len(items) - 1 else ''}" for j, (kk, vv) in enumerate(items)]
            lines.append(f" }}{comma}")
        else:
            lines.append(f" {one(k)}: {one(v)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output JSON path")
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache", "mlflow-wheels"), help="wheel cache dir (git-ignored)")
    ap.add_argument("--json-url", default=DEFAULT_JSON_URL)
    ap.add_argument("--min-version", default="1.30.0")
    ap.add_argument("--max-version", default=None, help="default: newest final release on the index")
    ap.add_argument("--jobs", type=int, default=2, help="parallel downloads (capped at 2)")
    ap.add_argument("--offline", action="store_true", help="use cached index JSON + wheels only")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    cat = build(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dump_compact(cat))
    os.replace(tmp, args.out)
    s = cat["stats"]
    print(f"wrote {args.out}: {s['releasesCovered']} releases, {s['trackingRevisions']} tracking / "
          f"{s['authRevisions']} auth revisions, {len(cat['skipped'])} skipped, {len(cat['anomalies'])} anomalies; "
          f"downloads {s['downloaded']} ({s['downloadedBytes']/1e6:.0f} MB) in {s['downloadSeconds']}s, "
          f"cache {s['cacheBytes']/1e6:.0f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
