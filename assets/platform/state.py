"""The platform stage's shared pieces: its group, owners, the apply switch every asset takes, and the validated
Kubernetes step (render -> schema check -> save under ``platform/`` in the state store -> plan or apply on the target).
Renders are read back from the state store (``agentic platform render`` copies them out), never from a step's disk."""

import dagster as dg

from assets.stage import stage_asset
from infra.validate import validate_manifest
from resources.platform import PlatformResource

GROUP = "platform"
OWNERS = ["team:platform"]
asset = stage_asset(GROUP, OWNERS)


class ApplyConfig(dg.Config):
    apply: bool = False  # plan only unless asked
    prune: bool = True
    wait: bool = True


def validated(manifests: list[dict]) -> list[str]:
    return [f"{m['kind']}/{m['metadata']['name']}: {e}" for m in manifests for e in validate_manifest(m)]


def kube_step(context, name: str, manifests: list[dict], platform: PlatformResource, config: ApplyConfig) -> dict:
    errors = validated(manifests)
    if errors:
        raise dg.Failure(f"{name}: {len(errors)} schema error(s):\n" + "\n".join(errors[:20]))
    meta = {
        "manifests": len(manifests),
        "artifact": platform.write(name, manifests),
        "validated": True,
        "compute_mode": platform.compute_mode,
        "objects": dg.MetadataValue.json([f"{m['kind']}/{m['metadata']['name']}" for m in manifests]),
    }
    meta.update(platform.kubernetes(name, manifests, config.apply, config.prune, config.wait, context.log.info))
    return meta
