"""Where documents live: a local folder laid out like an S3 bucket (local profile) or S3 (eks)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import dagster as dg


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # changes whenever the content may have changed
    last_modified: float  # epoch seconds


def validate_key(key: str) -> str:
    p = PurePosixPath(key)
    if not key or key.startswith("/") or ".." in p.parts or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}")
    return str(p)


class DocumentStoreResource(dg.ConfigurableResource):
    """Objects by key, like a bucket: ``list_objects``, ``get``, ``exists``, ``put``, ``delete``."""

    def list_objects(self, prefix: str | None = None) -> list[ObjectInfo]:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


class LocalDocumentStore(DocumentStoreResource):
    """A folder whose relative paths are object keys (``pubmed/123.xml``), like an S3 bucket."""

    root: str
    prefix: str = ""

    def _path(self, key: str) -> Path:
        return Path(self.root) / validate_key(key)

    def list_objects(self, prefix: str | None = None) -> list[ObjectInfo]:
        prefix = self.prefix if prefix is None else prefix
        root = Path(self.root)
        if not root.exists():
            return []
        out: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(root).as_posix()
                if not key.startswith(prefix):
                    continue
                st = full.stat()
                out.append(ObjectInfo(key, st.st_size, f"{st.st_size}-{st.st_mtime_ns}", st.st_mtime))
        out.sort(key=lambda o: o.key)
        return out

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3DocumentStore(DocumentStoreResource):
    """The same interface over an S3 bucket/prefix (the eks profile; moto server in tests)."""

    bucket: str
    prefix: str = ""
    region_name: str = "us-east-1"
    endpoint_url: str = ""  # moto or a VPC endpoint; empty = AWS

    def _client(self):
        import boto3

        return boto3.client("s3", region_name=self.region_name, endpoint_url=self.endpoint_url or None)

    def list_objects(self, prefix: str | None = None) -> list[ObjectInfo]:
        prefix = self.prefix if prefix is None else prefix
        out: list[ObjectInfo] = []
        for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out.append(ObjectInfo(o["Key"], int(o["Size"]), o["ETag"].strip('"'), o["LastModified"].timestamp()))
        out.sort(key=lambda o: o.key)
        return out

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self._client().get_object(Bucket=self.bucket, Key=validate_key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client().head_object(Bucket=self.bucket, Key=validate_key(key))
            return True
        except ClientError:
            return False

    def put(self, key: str, data: bytes) -> None:
        self._client().put_object(Bucket=self.bucket, Key=validate_key(key), Body=data)

    def delete(self, key: str) -> None:
        self._client().delete_object(Bucket=self.bucket, Key=validate_key(key))
