"""Where a replica lives (MLFLOWCTL_REPLICA_URL): a directory, s3://bucket/prefix, wasbs://container@account.host/prefix
or gs://bucket/prefix, behind one small interface of keys ("generations/<id>/snapshot.json") so that the replicator
and the restore do not care which.

Credentials, resolved as the cloud storage modes resolve theirs (settings._credentials_source): the content's Connect
OAuth integration (`connect`: AWS credentials, or an Entra / Google access token, exchanged by cloud/ and renewed
before they expire) when the content runs on Connect with a session token and no static credentials are set, else each
SDK's own chain (`ambient`: MLFLOW_S3_ENDPOINT_URL and the AWS_* variables or an instance role;
AZURE_STORAGE_CONNECTION_STRING or DefaultAzureCredential; STORAGE_EMULATOR_HOST or Google's application default
credentials). MLFLOWCTL_REPLICA_CREDENTIALS=connect|ambient decides explicitly; MLFLOWCTL_REPLICA_OAUTH_INTEGRATION
(else MLFLOWCTL_OAUTH_INTEGRATION) names the integration when the content has several. The SDK is imported on use: a
bundle needs only its replica's (`mlflowctl init --replica-store s3|wasbs|gs` adds it to requirements.txt).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from .artifact_files import remove_empty_parents

PARTIAL = ".partial"


class ReplicaStore:
    url: str

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def put_file(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """Every key under `prefix` with its size, sorted."""
        raise NotImplementedError

    def delete(self, keys: list[str]) -> None:
        raise NotImplementedError

    def find(self, key: str) -> bytes | None:
        """The object at `key`, or None when there is none (a listing decides, not each SDK's own not-found error)."""
        if not any(found == key for found, _ in self.list(key)):
            return None
        return self.get(key)

    def sweep_partials(self, before: float) -> int:
        """Removes what killed writers left half-written before `before` (a Unix time); object stores leave none."""
        return 0


class DirectoryStore(ReplicaStore):
    """Each key a file; written to a temporary name, synced and renamed, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def _commit(self, key: str, write) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + PARTIAL)
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def put(self, key: str, data: bytes) -> None:
        self._commit(key, lambda handle: handle.write(data))

    def put_file(self, key: str, path: Path) -> None:
        def copy(handle) -> None:
            with open(path, "rb") as source:
                while block := source.read(1 << 20):
                    handle.write(block)

        self._commit(key, copy)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def find(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[tuple[str, int]]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.exists():
            return []
        found = []
        for directory, _, files in os.walk(base):
            for name in files:
                if name.endswith(PARTIAL):
                    continue
                path = Path(directory) / name
                try:
                    found.append((path.relative_to(self.root).as_posix(), path.stat().st_size))
                except FileNotFoundError:
                    continue  # deleted while listed (a sweep): not there any more
        return sorted(found)

    def sweep_partials(self, before: float) -> int:
        removed = 0
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = Path(directory) / name
                try:
                    if name.endswith(PARTIAL) and path.stat().st_mtime < before:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        # Empty directories left behind go too (deepest first), up to the root.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            remove_empty_parents(parent, self.root)


def _split(path: str) -> str:
    prefix = path.strip("/")
    return f"{prefix}/" if prefix else ""


class S3Store(ReplicaStore):
    def __init__(self, url: str, source: Any = None) -> None:
        import boto3.session
        import botocore.session

        parsed = urlparse(url)
        self.url, self.bucket, self.prefix = url, parsed.netloc, _split(parsed.path)
        session = botocore.session.get_session()
        if source is not None:  # Connect-issued AWS credentials, renewed before they expire
            from .cloud.aws import _ConnectAwsProvider

            session.get_component("credential_provider").insert_before("env", _ConnectAwsProvider(source))
        self.client = boto3.session.Session(botocore_session=session).client(
            "s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
        )

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self.prefix + key)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def list(self, prefix: str) -> list[tuple[str, int]]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        ):
            found += [(item["Key"][len(self.prefix) :], item["Size"]) for item in page.get("Contents", [])]
        return sorted(found)

    def delete(self, keys: list[str]) -> None:
        for at in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": self.prefix + key} for key in keys[at : at + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})


class AzureBlobStore(ReplicaStore):
    def __init__(self, url: str, source: Any = None) -> None:
        from azure.storage.blob import BlobServiceClient

        parsed = urlparse(url)
        container, _, host = parsed.netloc.partition("@")
        self.url, self.prefix = url, _split(parsed.path)
        connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if source is not None:  # an Entra token for storage, exchanged through Connect
            from .cloud.azure import _TokenCredential

            endpoint = os.environ.get("MLFLOWCTL_AZURE_BLOB_ENDPOINT") or f"https://{host}"
            service = BlobServiceClient(account_url=endpoint, credential=_TokenCredential(source))
        elif connection_string:
            service = BlobServiceClient.from_connection_string(connection_string)
        else:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(account_url=f"https://{host}", credential=DefaultAzureCredential())
        self.container = service.get_container_client(container)

    def put(self, key: str, data: bytes) -> None:
        self.container.upload_blob(self.prefix + key, data, overwrite=True)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as handle:
            self.container.upload_blob(self.prefix + key, handle, overwrite=True, max_concurrency=2)

    def get(self, key: str) -> bytes:
        return self.container.download_blob(self.prefix + key).readall()

    def list(self, prefix: str) -> list[tuple[str, int]]:
        return sorted(
            (blob.name[len(self.prefix) :], blob.size)
            for blob in self.container.list_blobs(name_starts_with=self.prefix + prefix)
        )

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.container.delete_blob(self.prefix + key)


class GcsStore(ReplicaStore):
    def __init__(self, url: str, source: Any = None) -> None:
        from google.cloud import storage

        parsed = urlparse(url)
        self.url, self.prefix = url, _split(parsed.path)
        if source is not None:  # a Google access token exchanged through Connect
            from .cloud.gcp import _google_credentials

            client = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT"), credentials=_google_credentials(source)
            )
        else:
            client = storage.Client()
        self.bucket = client.bucket(parsed.netloc)

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(self.prefix + key).upload_from_string(data)

    def put_file(self, key: str, path: Path) -> None:
        self.bucket.blob(self.prefix + key).upload_from_filename(str(path))

    def get(self, key: str) -> bytes:
        return self.bucket.blob(self.prefix + key).download_as_bytes()

    def list(self, prefix: str) -> list[tuple[str, int]]:
        return sorted(
            (blob.name[len(self.prefix) :], blob.size or 0)
            for blob in self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix)
        )

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.bucket.blob(self.prefix + key).delete()


OBJECT_STORES = {"s3": S3Store, "wasbs": AzureBlobStore, "gs": GcsStore}


STATIC_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID",
    "wasbs": "AZURE_STORAGE_CONNECTION_STRING",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS",
}


def replica_credentials(scheme: str, env: Mapping[str, str]) -> str:
    """connect or ambient (see the module's comment). @raises ValueError for another explicit value."""
    explicit = (env.get("MLFLOWCTL_REPLICA_CREDENTIALS") or "").strip().lower()
    if explicit and explicit not in ("connect", "ambient"):
        raise ValueError(f"MLFLOWCTL_REPLICA_CREDENTIALS must be connect or ambient, got {explicit!r}")
    if explicit:
        return explicit
    on_connect = env.get("CONNECT_CONTENT_SESSION_TOKEN") or env.get("CONNECT_CONTENT_SESSION_TOKEN_FILE")
    return "connect" if on_connect and not env.get(STATIC_CREDENTIALS[scheme]) else "ambient"


def _connect_source(scheme: str, env: Mapping[str, str]) -> Any:
    """A renewing credential from the content's Connect OAuth integration; the first one is fetched now, so a missing
    integration is the error the status shows."""
    from .cloud import AZURE_STORAGE_SCOPE, GOOGLE_SCOPE
    from .connect_oauth import ConnectTokenExchange, access_token_source, aws_credentials_source

    exchange = ConnectTokenExchange(env)
    audience = env.get("MLFLOWCTL_REPLICA_OAUTH_INTEGRATION") or env.get("MLFLOWCTL_OAUTH_INTEGRATION") or None
    if scheme == "s3":
        source = aws_credentials_source(exchange, audience)
    else:
        source = access_token_source(
            exchange, "replica storage", audience, AZURE_STORAGE_SCOPE if scheme == "wasbs" else GOOGLE_SCOPE
        )
    source.get()
    return source


def open_store(url: str | Path | ReplicaStore, env: Mapping[str, str] | None = None) -> ReplicaStore:
    """The store for a replica URL: a path (or file://) is a directory; s3://, wasbs://, gs:// an object store."""
    if isinstance(url, ReplicaStore):
        return url
    text = str(url)
    scheme = re.match(r"^([a-z0-9]+)://", text)
    if scheme and scheme.group(1) in OBJECT_STORES:
        env = os.environ if env is None else env
        name = scheme.group(1)
        source = _connect_source(name, env) if replica_credentials(name, env) == "connect" else None
        return OBJECT_STORES[name](text, source)
    if scheme and scheme.group(1) != "file":
        raise ValueError(
            f"MLFLOWCTL_REPLICA_URL: {scheme.group(1)}:// is not a replica store (a directory, s3://, wasbs:// or gs://)"
        )
    return DirectoryStore(Path(text.removeprefix("file://")))
