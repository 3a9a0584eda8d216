"""The declared platform (``infra/platform.yaml``) as a resource: where it is read from, where rendered files go, and
whether the platform assets talk to AWS and Kubernetes (``eks``) or only render and validate (``local``)."""

from pathlib import Path

import dagster as dg
import yaml

from infra.platform.config import PlatformConfig, load_platform_config


class PlatformResource(dg.ConfigurableResource):
    """The declared platform (``infra/platform.yaml``) and where rendered files go; ``live`` = talk to AWS/Kubernetes."""

    config_path: str = ""
    region: str = ""
    out_dir: str
    live: bool = False  # eks profile: plan against the account and cluster

    def load(self) -> PlatformConfig:
        return load_platform_config(self.config_path or None, {"region": self.region} if self.region else None)

    def write(self, name: str, manifests: list[dict]) -> Path:
        d = Path(self.out_dir)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
        return path
