"""Where documents live: a local folder laid out like an S3 bucket (local profile) or S3 (eks)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import dagster as dg

from core.sensing import ChangeBatch, changes_from_s3_events, listing_changes


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # changes whenever the content may have changed
    last_modified: float  # epoch seconds
    access: str = ""  # changes whenever the object's declared groups may have changed ("": it declares none)


def _sensed(o: ObjectInfo) -> ObjectInfo:
    """What the sensor compares: a permission change is a change too (it must reach the index), so the access stamp
    joins the ETag there (never in the inventory's, which decides re-parsing)."""
    return dataclasses.replace(o, etag=f"{o.etag}+{o.access}") if o.access else o


def validate_key(key: str) -> str:
    p = PurePosixPath(key)
    if not key or key.startswith("/") or ".." in p.parts or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}")
    return str(p)


ACCESS_SIDECAR = ".access.json"  # ``<key>.access.json`` next to a document in the local store: its groups


class DocumentStoreResource(dg.ConfigurableResource):
    """Objects by key, like a bucket: ``list_objects``, ``get``, ``exists``, ``put``, ``delete``; and who may read
    each one (``declared_groups``, ``set_groups``)."""

    def declared_groups(self, key: str) -> list[str] | None:
        """The groups a document declares (None: it declares none, the access policy decides). Raises ValueError
        with the reason when the declaration is malformed."""
        raise NotImplementedError

    def set_groups(self, key: str, groups: list[str] | None) -> None:
        """Declare who may read ``key`` (None: remove the declaration) without touching its content."""
        raise NotImplementedError

    def iter_objects(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        """Objects one at a time, in no promised order: memory stays flat however large the store."""
        raise NotImplementedError

    def list_objects(self, prefix: str | None = None) -> list[ObjectInfo]:
        return sorted(self.iter_objects(prefix), key=lambda o: o.key)

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def poll_changes(self, cursor: str | None, max_messages: int = 1000) -> tuple[ChangeBatch, str]:
        """What changed since ``cursor`` (a string from the previous call, None at first) and the next cursor.
        This default lists the store (``core.sensing.detect_changes``, bounded cursor); a store fed by events
        (``S3DocumentStore`` with ``queue_url``) reads at most ``max_messages`` of them instead. Call
        ``ChangeBatch.ack()`` once the changes are safely handed on (the run request is built)."""
        return listing_changes((_sensed(o) for o in self.iter_objects()), cursor)


class LocalDocumentStore(DocumentStoreResource):
    """A folder whose relative paths are object keys (``pubmed/123.xml``), like an S3 bucket."""

    root: str
    prefix: str = ""

    def _path(self, key: str) -> Path:
        return Path(self.root) / validate_key(key)

    def iter_objects(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        prefix = self.prefix if prefix is None else prefix
        root = Path(self.root)
        if not root.exists():
            return
        for dirpath, _dirs, files in os.walk(root):
            present = set(files)
            for name in files:
                if name.startswith(".tmp-") or name.endswith(ACCESS_SIDECAR):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(root).as_posix()
                if not key.startswith(prefix):
                    continue
                st = full.stat()
                access, modified = "", st.st_mtime
                if name + ACCESS_SIDECAR in present:
                    side = (Path(dirpath) / (name + ACCESS_SIDECAR)).stat()
                    access = f"{side.st_size}-{side.st_mtime_ns}"
                    modified = max(modified, side.st_mtime)  # as on S3, where a metadata change moves LastModified
                yield ObjectInfo(key, st.st_size, f"{st.st_size}-{st.st_mtime_ns}", modified, access)

    def declared_groups(self, key: str) -> list[str] | None:
        from core.access import parse_declared

        try:
            raw = self._path(key + ACCESS_SIDECAR).read_bytes()
        except FileNotFoundError:
            return None
        return parse_declared(raw)

    def set_groups(self, key: str, groups: list[str] | None) -> None:
        if groups is None:
            self._path(key + ACCESS_SIDECAR).unlink(missing_ok=True)
        else:
            self.put(key + ACCESS_SIDECAR, json.dumps({"groups": list(groups)}).encode())

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
        self._path(key + ACCESS_SIDECAR).unlink(missing_ok=True)


NOTIFICATION_ID = "agentic-documents"
GROUPS_METADATA = "groups"  # x-amz-meta-groups


class S3DocumentStore(DocumentStoreResource):
    """The same interface over an S3 bucket/prefix (the eks profile; moto server in tests)."""

    bucket: str
    prefix: str = ""
    region_name: str = "us-east-1"
    endpoint_url: str = ""  # moto or a VPC endpoint; empty = AWS
    # SQS queue receiving the bucket's event notifications (``ensure_notifications``); empty = list the bucket
    queue_url: str = ""
    queue_wait_s: int = 1  # long poll of a tick's first receive (0 = short poll, as in tests)
    queue_visibility_s: int = 300  # received, unacked messages come back after this long

    def _client(self):
        import boto3

        return boto3.client("s3", region_name=self.region_name, endpoint_url=self.endpoint_url or None)

    def _sqs(self):
        import boto3

        return boto3.client("sqs", region_name=self.region_name, endpoint_url=self.endpoint_url or None)

    def iter_objects(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        prefix = self.prefix if prefix is None else prefix
        for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                modified = o["LastModified"].timestamp()
                # Metadata is not in the listing; changing it (a copy onto itself) moves LastModified, so that is
                # the access stamp: a HEAD is made only for objects whose stamp moved.
                yield ObjectInfo(o["Key"], int(o["Size"]), o["ETag"].strip('"'), modified, f"m{modified:.6f}")

    def declared_groups(self, key: str) -> list[str] | None:
        """``x-amz-meta-groups`` (comma-separated), read with one HEAD."""
        from botocore.exceptions import ClientError

        from core.access import parse_declared

        try:
            meta = self._client().head_object(Bucket=self.bucket, Key=validate_key(key)).get("Metadata", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise
        raw = meta.get(GROUPS_METADATA)
        return None if raw is None else parse_declared(raw)

    def set_groups(self, key: str, groups: list[str] | None) -> None:
        """Replaces the object's metadata in place (a copy onto itself): the content and its ETag stay."""
        client, key = self._client(), validate_key(key)
        meta = dict(client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {}))
        meta.pop(GROUPS_METADATA, None)
        if groups is not None:
            meta[GROUPS_METADATA] = ",".join(groups)
        client.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            Metadata=meta,
            MetadataDirective="REPLACE",
        )

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

    def poll_changes(self, cursor: str | None, max_messages: int = 1000) -> tuple[ChangeBatch, str]:
        """Without ``queue_url``: the listing (every tick lists the whole prefix). With it: up to ``max_messages``
        S3 event notifications from SQS (receives of 10), folded into one batch; the cursor stays a constant few
        bytes because the queue holds the state. The messages are deleted by ``ack()``, never here."""
        if not self.queue_url:
            return super().poll_changes(cursor, max_messages)
        sqs = self._sqs()
        bodies: list[str] = []
        receipts: list[str] = []
        while len(bodies) < max_messages:
            got = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(bodies)),
                WaitTimeSeconds=self.queue_wait_s if not bodies else 0,
                VisibilityTimeout=self.queue_visibility_s,
            ).get("Messages", [])
            if not got:
                break
            bodies += [m["Body"] for m in got]
            receipts += [m["ReceiptHandle"] for m in got]
        batch = changes_from_s3_events(bodies, self.bucket, self.prefix)
        batch.receipts, batch.acker = receipts, lambda handles: self._delete_messages(handles, sqs)
        return batch, json.dumps({"source": "sqs"})

    def _delete_messages(self, receipts: list[str], sqs=None) -> int:
        """Deletes messages by receipt handle, 10 per call; returns how many could not be deleted (they come back)."""
        sqs, failed = sqs or self._sqs(), 0
        for i in range(0, len(receipts), 10):
            entries = [{"Id": str(j), "ReceiptHandle": r} for j, r in enumerate(receipts[i : i + 10])]
            try:
                failed += len(sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", []))
            except Exception:  # noqa: BLE001 - best effort: undeleted messages are redelivered, never lost
                failed += len(entries)
        return failed

    def ensure_notifications(self, queue_name: str = "") -> str:
        """Idempotently wires the bucket to an SQS queue and returns the queue URL (for ``queue_url``): creates the
        queue if needed (``queue_url``, else ``queue_name``, else ``<bucket>-documents``), lets only this bucket send
        to it (queue policy: s3.amazonaws.com, aws:SourceArn = the bucket, aws:SourceAccount = the queue's
        account), and sets the bucket notification ``agentic-documents`` (s3:ObjectCreated:* and
        s3:ObjectRemoved:*, filtered to ``prefix``), keeping the bucket's other notifications. S3 then sends one
        ``s3:TestEvent`` message, which ``poll_changes`` ignores."""
        sqs, s3 = self._sqs(), self._client()
        url = (
            self.queue_url
            or sqs.create_queue(
                QueueName=queue_name or f"{self.bucket}-documents",
                Attributes={
                    "VisibilityTimeout": str(self.queue_visibility_s),
                    "MessageRetentionPeriod": str(14 * 24 * 3600),
                    "SqsManagedSseEnabled": "true",
                },
            )["QueueUrl"]
        )
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        partition, account = arn.split(":")[1], arn.split(":")[4]
        bucket_arn = f"arn:{partition}:s3:::{self.bucket}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "BucketNotifications",
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {
                        "ArnEquals": {"aws:SourceArn": bucket_arn},
                        "StringEquals": {"aws:SourceAccount": account},
                    },
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
        config = {
            k: v
            for k, v in s3.get_bucket_notification_configuration(Bucket=self.bucket).items()
            if k != "ResponseMetadata"
        }
        queues = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != NOTIFICATION_ID]
        ours: dict = {"Id": NOTIFICATION_ID, "QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
        if self.prefix:
            ours["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.prefix}]}}
        s3.put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={**config, "QueueConfigurations": [*queues, ours]}
        )
        return url
