"""The declared platform (``infra/platform.yaml``) as a resource: where it is read from, where rendered artifacts go
(the pipeline state store, under ``platform/``: on eks every step is its own pod), and whether the platform assets talk
to AWS and Kubernetes (``eks``) or only render and validate (``local``)."""

import json

import dagster as dg
import yaml

from infra.platform.config import PlatformConfig, load_platform_config
from resources.state_store import PipelineStateStore


class PlatformResource(dg.ConfigurableResource):
    """The declared platform (``infra/platform.yaml``) and where rendered artifacts go; ``live`` = talk to AWS/Kubernetes."""

    store: PipelineStateStore
    config_path: str = ""
    region: str = ""
    live: bool = False  # eks profile: plan against the account and cluster

    def load(self) -> PlatformConfig:
        return load_platform_config(self.config_path or None, {"region": self.region} if self.region else None)

    def write(self, name: str, manifests: list[dict]) -> str:
        """Rendered manifests as ``platform/<name>.yaml`` in the state store; returns where they are."""
        return self.save(f"{name}.yaml", yaml.safe_dump_all(manifests, sort_keys=False))

    def save(self, name: str, content: str | dict | list) -> str:
        """One rendered artifact (text, or JSON for a dict/list) as ``platform/<name>``; returns where it is."""
        text = content if isinstance(content, str) else json.dumps(content, indent=1)
        self.store.put_bytes(f"platform/{name}", text.encode())
        return f"{self.store.describe().rstrip('/')}/platform/{name}"
