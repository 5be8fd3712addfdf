"""The files of the artifact store the server writes to (MLFLOW_ARTIFACTS_DESTINATION, or the data directory's
artifacts/ under local storage), as `storage report` and `gc` see them: a flat listing with sizes and modification
times, and deletion of everything under a prefix. One class per kind of store; the object stores use the clients
MLflow's own artifact repositories use, so the credentials the cloud modes install for MLflow apply here too.

Paths are relative to the destination, with "/" separators ("1/<run id>/artifacts/model.pkl").
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class ArtifactFile:
    path: str
    size: int
    modified: float  # Unix seconds


class ArtifactFiles:
    destination: str

    def walk(self, prefix: str = "") -> Iterator[ArtifactFile]:
        """Every file under `prefix` ("" for all), in no particular order."""
        raise NotImplementedError

    def delete(self, prefix: str) -> int:
        """Removes every file under `prefix` (a directory-like path, never ""); the number removed. Files already
        gone are not an error: a resumed deletion converges."""
        raise NotImplementedError

    def relative(self, uri: str | None) -> str | None:
        """The path of `uri` inside this store, or None when the URI points elsewhere (another bucket, a path outside
        the destination, a scheme this store does not serve): such files are never deleted."""
        if not uri:
            return None
        if uri.startswith("mlflow-artifacts:"):
            # mlflow-artifacts:/1/abc/artifacts, or with a host: mlflow-artifacts://host:5000/1/abc/artifacts
            return _clean(unquote(urlsplit(uri).path))
        base = self.destination.rstrip("/")
        if uri == base:
            return ""
        if uri.startswith(base + "/"):
            return _clean(uri[len(base) + 1 :])
        return None


def _clean(path: str) -> str | None:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


class DirectoryFiles(ArtifactFiles):
    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://")).resolve()
        self.destination = str(self.root)

    def relative(self, uri: str | None) -> str | None:
        if uri and uri.startswith("file://"):
            uri = unquote(urlsplit(uri).path)
        return super().relative(uri)

    def walk(self, prefix: str = "") -> Iterator[ArtifactFile]:
        base = self.root / prefix if prefix else self.root
        for directory, _, files in os.walk(base):
            for name in files:
                path = Path(directory) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted while listed
                yield ArtifactFile(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime)

    def delete(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("refusing to delete the whole artifact store")
        target = self.root / prefix
        if not target.exists():
            return 0
        count = sum(len(files) for _, _, files in os.walk(target)) if target.is_dir() else 1
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        # Directories left empty go too (an experiment directory whose last run was purged).
        remove_empty_parents(target.parent, self.root)
        return count


def remove_empty_parents(directory: Path, root: Path) -> None:
    """Removes `directory` and the directories above it while they are empty, up to (not including) `root`."""
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _delete_each(names: list[str], delete_one: Callable[[str], None], gone: str) -> int:
    """Deletes object by object (a store without a batch delete); an object already gone (`gone`, the SDK's
    not-found error) is not an error."""
    for name in names:
        try:
            delete_one(name)
        except Exception as exc:  # noqa: BLE001 - only the SDK's not-found passes
            if type(exc).__name__ != gone:
                raise
    return len(names)


def _split_bucket(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3Files(ArtifactFiles):
    def __init__(self, destination: str) -> None:
        import boto3

        self.destination = destination.rstrip("/")
        self.bucket, self.prefix = _split_bucket(destination)
        # boto3's default session: the one the AWS cloud mode fills with Connect-issued credentials.
        self.client = boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)

    def walk(self, prefix: str = "") -> Iterator[ArtifactFile]:
        start = self.prefix + (prefix.rstrip("/") + "/" if prefix else "")
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                yield ArtifactFile(item["Key"][len(self.prefix) :], int(item["Size"]), item["LastModified"].timestamp())

    def delete(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("refusing to delete the whole artifact store")
        keys = [self.prefix + found.path for found in self.walk(prefix)]
        for at in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[at : at + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)


class AzureBlobFiles(ArtifactFiles):
    def __init__(self, destination: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.destination = destination.rstrip("/")
        # MLflow's repository carries the client the Azure cloud mode registered (an Entra token), or its own.
        repository = get_artifact_repository(destination)
        container, _, _, path = repository.parse_wasbs_uri(destination)  # type: ignore[attr-defined]
        self.container = repository.client.get_container_client(container)  # type: ignore[attr-defined]
        self.prefix = f"{path.strip('/')}/" if path.strip("/") else ""

    def walk(self, prefix: str = "") -> Iterator[ArtifactFile]:
        start = self.prefix + (prefix.rstrip("/") + "/" if prefix else "")
        for blob in self.container.list_blobs(name_starts_with=start):
            yield ArtifactFile(blob.name[len(self.prefix) :], int(blob.size or 0), blob.last_modified.timestamp())

    def delete(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("refusing to delete the whole artifact store")
        names = [self.prefix + found.path for found in self.walk(prefix)]
        return _delete_each(names, self.container.delete_blob, "ResourceNotFoundError")


class GcsFiles(ArtifactFiles):
    def __init__(self, destination: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.destination = destination.rstrip("/")
        bucket, self.prefix = _split_bucket(destination)
        # MLflow's repository carries the client the GCP cloud mode registered (a Connect-issued token), or its own.
        repository = get_artifact_repository(destination)
        self.bucket = repository._get_bucket(bucket)  # type: ignore[attr-defined]

    def walk(self, prefix: str = "") -> Iterator[ArtifactFile]:
        start = self.prefix + (prefix.rstrip("/") + "/" if prefix else "")
        for blob in self.bucket.client.list_blobs(self.bucket, prefix=start):
            updated = blob.updated.timestamp() if blob.updated else 0.0
            yield ArtifactFile(blob.name[len(self.prefix) :], int(blob.size or 0), updated)

    def delete(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("refusing to delete the whole artifact store")
        names = [self.prefix + found.path for found in self.walk(prefix)]
        return _delete_each(names, lambda name: self.bucket.blob(name).delete(), "NotFound")


OBJECT_STORES: dict[str, Callable[[str], ArtifactFiles]] = {"s3": S3Files, "wasbs": AzureBlobFiles, "gs": GcsFiles}


def open_artifact_files(destination: str) -> ArtifactFiles:
    scheme = destination.split("://", 1)[0] if "://" in destination else ""
    if scheme in OBJECT_STORES:
        return OBJECT_STORES[scheme](destination)
    if scheme not in ("", "file"):
        raise ValueError(f"artifact store {scheme}:// is not one that storage report and gc can read")
    return DirectoryFiles(destination)
