"""API keys of named principals: a folder of hashed records (local profile) or AWS Secrets Manager (eks).

Both implement ``KeyStoreResource``: ``create``, ``list_keys``, ``rotate``, ``revoke``, ``authenticate``; one contract
test runs against both (Secrets Manager on a moto server). A record holds the SHA-256 of the token, never the token,
which is returned once by ``create``/``rotate``. The deployment's single key (``admin_key``, AGENTIC_API_KEY) keeps
working as the admin principal, who reads every document.

``DocumentAccessResource`` is the policy for documents that declare no groups (path rules, then a default).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path

import dagster as dg

from core.access import (
    ADMIN_PRINCIPAL,
    ALL,
    LEGACY_KEY_ID,
    AccessPolicy,
    KeyRecord,
    Principal,
    key_id_of,
    new_key_record,
    verify,
)


class KeyStoreResource(dg.ConfigurableResource):
    """The interface: subclasses implement ``_load``, ``_save`` and ``_records``."""

    admin_key: str = ""  # the deployment's single bearer token: the admin principal (empty: none)

    def _load(self, key_id: str) -> KeyRecord | None:
        raise NotImplementedError

    def _save(self, record: KeyRecord) -> None:
        raise NotImplementedError

    def _records(self) -> list[KeyRecord]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def create(
        self,
        principal: str,
        groups: list[str],
        rate_per_minute: int = 0,
        concurrency: int = 0,
        description: str = "",
    ) -> tuple[KeyRecord, str]:
        """A new key for ``principal``: (its record, the token; shown once, stored only as a hash)."""
        record, token = new_key_record(principal, groups, rate_per_minute, concurrency, description)
        self._save(record)
        return record, token

    def get(self, key_id: str) -> KeyRecord | None:
        return self._load(key_id)

    def list_keys(self, principal: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        out = [
            r
            for r in self._records()
            if (principal is None or r.principal == principal) and (include_revoked or r.active)
        ]
        return sorted(out, key=lambda r: (r.principal, r.created))

    def revoke(self, key_id: str) -> KeyRecord:
        record = self._load(key_id)
        if record is None:
            raise KeyError(f"no key {key_id!r}")
        if record.active:
            record.revoked = time.time()
            self._save(record)
        return record

    def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new key with the old one's principal, groups and limits; the old one is revoked."""
        old = self._load(key_id)
        if old is None or not old.active:
            raise KeyError(f"no active key {key_id!r}")
        new, token = self.create(old.principal, old.groups, old.rate_per_minute, old.concurrency, old.description)
        old.revoked, old.rotated_to = time.time(), new.key_id
        self._save(old)
        return new, token

    def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token belongs to, or None."""
        if not token:
            return None
        if self.admin_key and secrets.compare_digest(token.encode(), self.admin_key.encode()):
            return Principal(ADMIN_PRINCIPAL, (ALL,), LEGACY_KEY_ID)
        key_id = key_id_of(token)
        return verify(self._load(key_id), token) if key_id else None


class LocalKeyStore(KeyStoreResource):
    """One JSON file per key under ``root`` (``AGENTIC_HOME/secrets/keys``, mode 0700/0600), atomically replaced."""

    root: str

    def describe(self) -> str:
        return f"local:{self.root}"

    def _path(self, key_id: str) -> Path:
        return Path(self.root) / f"{key_id}.json"

    def _load(self, key_id: str) -> KeyRecord | None:
        try:
            return KeyRecord.from_dict(json.loads(self._path(key_id).read_text()))
        except FileNotFoundError:
            return None

    def _save(self, record: KeyRecord) -> None:
        root = Path(self.root)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=root)
        with os.fdopen(fd, "w") as f:
            json.dump(record.to_dict(), f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._path(record.key_id))

    def _records(self) -> list[KeyRecord]:
        root = Path(self.root)
        if not root.exists():
            return []
        return [KeyRecord.from_dict(json.loads(p.read_text())) for p in sorted(root.glob("*.json"))]


class SecretsManagerKeyStore(KeyStoreResource):
    """One secret per key, ``<prefix><key id>``, whose value is the hashed record: a lookup is one GetSecretValue
    (the API caches it briefly), and keys of different principals never share a read-modify-write."""

    prefix: str = "agentic/api-keys/"
    region_name: str = "us-east-1"
    endpoint_url: str = ""  # moto in tests; empty = AWS (the pod identity's role grants secretsmanager on the prefix)
    kms_key_id: str = ""  # the platform's KMS key; empty = the account's aws/secretsmanager key

    def describe(self) -> str:
        return f"secretsmanager:{self.prefix}"

    def _client(self):
        import boto3

        return boto3.client("secretsmanager", region_name=self.region_name, endpoint_url=self.endpoint_url or None)

    def _load(self, key_id: str) -> KeyRecord | None:
        from botocore.exceptions import ClientError

        try:
            raw = self._client().get_secret_value(SecretId=self.prefix + key_id)["SecretString"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        return KeyRecord.from_dict(json.loads(raw))

    def _save(self, record: KeyRecord) -> None:
        from botocore.exceptions import ClientError

        client, name, value = self._client(), self.prefix + record.key_id, json.dumps(record.to_dict())
        try:
            client.put_secret_value(SecretId=name, SecretString=value)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            extra = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
            client.create_secret(
                Name=name,
                SecretString=value,
                Description=f"agentic API key of {record.principal} (hashed)",
                Tags=[{"Key": "agentic/principal", "Value": record.principal}],
                **extra,
            )

    def _records(self) -> list[KeyRecord]:
        client = self._client()
        out = []
        for page in client.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [self.prefix]}]):
            for s in page.get("SecretList", []):
                if s["Name"].startswith(self.prefix):
                    record = self._load(s["Name"][len(self.prefix) :])
                    if record is not None:
                        out.append(record)
        return out


class DocumentAccessResource(dg.ConfigurableResource):
    """Who may read a document that declares no groups: the longest matching key-prefix rule, else ``default_groups``.
    A document declares its own groups with a sidecar ``<key>.access.json`` (local store) or S3 object metadata
    ``x-amz-meta-groups`` (eks); see ``DocumentStoreResource.declared_groups``."""

    rules: dict[str, list[str]] = {}
    default_groups: list[str] = ["public"]

    def policy(self) -> AccessPolicy:
        return AccessPolicy.of(self.rules, self.default_groups)
