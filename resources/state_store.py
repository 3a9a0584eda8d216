"""Pipeline state behind one interface: a local folder (``local``) or an S3 bucket/prefix (``eks``).

Every step may run in a fresh pod with an empty disk, so everything one step hands to another goes through
here: small tables and JSON records, model files, and *sharded* tables (the corpus split by a hash of the
document key into a fixed number of shards, so no step ever holds the whole corpus).

Writes are atomic on both: one object is one ``PUT`` on S3 (readers see the old or the new object, never half)
and a temp file + ``rename`` locally. A sharded table is a set of immutable shard objects named by the digest
of their input, plus one manifest object that says which object each shard is: a step writes its shard objects
first (a retry finds the ones already written and skips them) and then replaces the manifest in one write, so
readers see either the previous table or the new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$")
DEFAULT_SHARDS = 32


class StateStoreWriteError(OSError):
    """A write the store's disk refused (full, or over a size limit): nothing was replaced."""


def shard_of(key: str, shards: int) -> int:
    """The shard of a document key: stable across runs, processes and machines."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") % shards


def digest_of(*parts: Any) -> str:
    """A short digest of JSON-able parts (input versions of a shard)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def table_to_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def table_from_bytes(data: bytes, schema: pa.Schema | None = None) -> pa.Table:
    table = pq.read_table(io.BytesIO(data))
    return table.cast(schema) if schema is not None and table.schema != schema else table


class PipelineStateStore(dg.ConfigurableResource):
    """The interface. Implementations provide ``get_bytes``, ``put_bytes``, ``list_keys``, ``delete_keys`` and ``spec``."""

    shards: int = DEFAULT_SHARDS  # fixed for the life of a store (recorded in layout.json)
    # A step holds one shard at a time, so the shard size bounds its memory: about one shard per 1,000 documents
    # expected; beyond this many documents in a shard the inventory check warns.
    max_shard_documents: int = 5_000

    # ------------------------------------------------------------ primitives
    def get_bytes(self, key: str) -> bytes | None:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def list_keys(self, prefix: str) -> Iterator[str]:
        raise NotImplementedError

    def delete_keys(self, keys: Iterable[str]) -> int:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Enough to open the same store in another process (a Ray worker): no secrets, the environment has those."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @staticmethod
    def _check(key: str) -> str:
        if not _NAME.match(key) or ".." in key.split("/"):
            raise ValueError(f"invalid state key {key!r}")
        return key

    # ------------------------------------------------------------ records
    def read_json(self, key: str, default: Any = None) -> Any:
        raw = self.get_bytes(f"{key}.json")
        return default if raw is None else json.loads(raw)

    def write_json(self, key: str, value: Any) -> None:
        self.put_bytes(f"{key}.json", json.dumps(value, indent=1, sort_keys=True, default=str).encode())

    def read(self, name: str, schema: pa.Schema | None = None) -> pa.Table:
        """A small table (evaluation records, golden set): one Parquet object."""
        raw = self.get_bytes(f"tables/{name}.parquet")
        if raw is None:
            return schema.empty_table() if schema is not None else pa.table({})
        return table_from_bytes(raw, schema)

    def write(self, name: str, table: pa.Table) -> None:
        self.put_bytes(f"tables/{name}.parquet", table_to_bytes(table))

    # ------------------------------------------------------------ sharded tables
    def layout(self) -> int:
        """The shard count, recorded on first use; a store never changes it (keys would move between shards)."""
        layout = self.read_json("layout")
        if layout is None:
            self.write_json("layout", {"shards": self.shards, "version": 1})
            return self.shards
        if int(layout["shards"]) != self.shards:
            raise ValueError(
                f"the state store at {self.describe()} was created with {layout['shards']} shards, not {self.shards}; "
                "use the recorded count (or a new store: the next run rebuilds from the documents)"
            )
        return self.shards

    def manifest(self, name: str) -> dict[str, dict]:
        """shard (as '%05d') -> {"object", "input", "rows", "stats"} of the committed table."""
        return (self.read_json(f"sharded/{name}/_manifest") or {}).get("shards", {})

    @staticmethod
    def shard_name(shard: int) -> str:
        return f"{shard:05d}"

    def shard_object(self, name: str, shard: int, input_digest: str) -> str:
        return f"sharded/{name}/{self.shard_name(shard)}/{input_digest}.parquet"

    def find_shard(self, name: str, shard: int, input_digest: str) -> dict | None:
        """The entry of a shard object already written for this input (by an earlier, interrupted attempt)."""
        return self.read_json(self.shard_object(name, shard, input_digest)[: -len(".parquet")])

    def write_shard(self, name: str, shard: int, input_digest: str, table: pa.Table, stats: dict | None = None) -> dict:
        """Write one shard object (immutable, named by its input) and its small entry beside it; returns the entry.
        Not visible to readers until ``commit``."""
        obj = self.shard_object(name, shard, input_digest)
        self.put_bytes(obj, table_to_bytes(table))
        entry = {"object": obj, "input": input_digest, "rows": table.num_rows, "stats": stats or {}}
        self.write_json(obj[: -len(".parquet")], entry)
        return entry

    def read_shard(
        self,
        name: str,
        shard: int,
        schema: pa.Schema | None = None,
        entry: dict | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        entry = entry if entry is not None else self.manifest(name).get(self.shard_name(shard))
        if not entry:
            return schema.empty_table() if schema is not None else pa.table({})
        raw = self.get_bytes(entry["object"])
        if raw is None:
            raise FileNotFoundError(f"state object {entry['object']} named by the manifest of {name!r} is missing")
        if columns:
            present = set(pq.read_schema(io.BytesIO(raw)).names)
            table = pq.read_table(io.BytesIO(raw), columns=[c for c in columns if c in present])
        else:
            table = pq.read_table(io.BytesIO(raw))
        if schema is not None:
            target = pa.schema([schema.field(c) for c in columns]) if columns else schema
            if table.schema != target:
                # a column added to the schema since this shard was written reads as nulls (the next write fills it)
                for f in target:
                    if f.name not in table.column_names:
                        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
                table = table.select(target.names).cast(target)
        return table

    def iter_shards(
        self, name: str, schema: pa.Schema | None = None, columns: list[str] | None = None
    ) -> Iterator[tuple[int, pa.Table]]:
        """(shard, table) for every committed shard, one at a time: memory is one shard, whatever the corpus."""
        for shard_name, entry in sorted(self.manifest(name).items()):
            yield int(shard_name), self.read_shard(name, int(shard_name), schema, entry=entry, columns=columns)

    def commit(self, name: str, entries: dict[int, dict]) -> dict[str, dict]:
        """Make the given shard entries visible in one atomic manifest write; objects no longer named are removed."""
        current = self.manifest(name)
        updated = dict(current)
        updated.update({self.shard_name(s): e for s, e in entries.items()})
        self.write_json(f"sharded/{name}/_manifest", {"shards": updated})
        stale = [e["object"] for k, e in current.items() if updated.get(k, {}).get("object") != e["object"]]
        self.delete_keys([o for obj in stale for o in (obj, obj[: -len(".parquet")] + ".json")])
        return updated

    def drop_table(self, name: str) -> int:
        return self.delete_keys(list(self.list_keys(f"sharded/{name}/")))

    def table_rows(self, name: str) -> int:
        return sum(int(e.get("rows", 0)) for e in self.manifest(name).values())


class LocalStateStore(PipelineStateStore):
    """A folder (``AGENTIC_HOME/state``): the local profile."""

    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root) / self._check(key)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a partial file is never left to fill the disk further, nor read
            raise StateStoreWriteError(
                f"the state store at {self.root} could not write {key} ({exc.strerror or exc}): its disk is full or "
                "over a size limit. Nothing was replaced; readers keep the previous version. Free space and run "
                "again: what earlier steps committed is kept."
            ) from exc

    def list_keys(self, prefix: str) -> Iterator[str]:
        root = Path(self.root)
        base = root / prefix
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return
        for dirpath, _dirs, files in os.walk(start):
            for f in files:
                key = (Path(dirpath) / f).relative_to(root).as_posix()
                if key.startswith(prefix) and not f.endswith(".tmp"):
                    yield key

    def delete_keys(self, keys: Iterable[str]) -> int:
        n = 0
        for key in keys:
            try:
                self._path(key).unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def spec(self) -> dict[str, Any]:
        return {"kind": "local", "root": self.root, "shards": self.shards}

    def describe(self) -> str:
        return self.root


class S3StateStore(PipelineStateStore):
    """An S3 bucket and prefix (the eks profile; a moto server in tests). Credentials come from the environment
    (the pod identity on EKS), never from config."""

    bucket: str
    prefix: str = "state/"
    region_name: str = "us-east-1"
    endpoint_url: str = ""  # moto or a VPC endpoint; empty = AWS

    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url or None,
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"}),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}{self._check(key)}"

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def list_keys(self, prefix: str) -> Iterator[str]:
        for page in (
            self._client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{prefix}")
        ):
            for o in page.get("Contents", []):
                yield o["Key"][len(self.prefix) :]

    def delete_keys(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        client = self._client()
        for i in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(k)} for k in keys[i : i + 1000]], "Quiet": True},
            )
        return len(keys)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "s3",
            "bucket": self.bucket,
            "prefix": self.prefix,
            "region_name": self.region_name,
            "endpoint_url": self.endpoint_url,
            "shards": self.shards,
        }

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def state_store_from_spec(spec: dict[str, Any]) -> PipelineStateStore:
    """Reopen a store in another process (a Ray worker) from ``PipelineStateStore.spec()``."""
    spec = dict(spec)
    kind = spec.pop("kind")
    return {"local": LocalStateStore, "s3": S3StateStore}[kind](**spec)
