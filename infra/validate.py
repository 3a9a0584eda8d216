"""Schema validation of rendered Kubernetes manifests, offline.

- Kubernetes kinds: ``kubernetes-validate`` (the upstream OpenAPI schemas shipped in the package), strict, so an
  unknown field is an error.
- Custom resources (NodePool, EC2NodeClass, RayService, RayCluster, RayJob, ServiceMonitor): the upstream CRDs'
  ``spec.versions[].schema.openAPIV3Schema``, with unknown fields reported the way ``kubectl apply --validate=strict``
  reports them (the API server would silently prune them).

Most CRD files are not copied into this repository: they are read from ``AGENTIC_CRD_DIR`` or, by default, the project
lead's shared folder ``../shared/crds`` beside the checkout (see its README for their upstream tags and blob SHAs).
Those the shared folder lacks (PrometheusRule) are vendored in ``infra/crds`` (its README names their source).
Karpenter-kwok's own CRDs (KWOKNodeClass) come from where `make setup` built the local control plane. This offline check
runs before anything is sent; the real API server (`agentic cluster up`) then enforces the CEL rules this cannot.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]
KUBERNETES_VERSION = "1.33"


VENDORED_CRDS = REPO / "infra" / "crds"


def crd_dir() -> Path:
    return Path(os.environ.get("AGENTIC_CRD_DIR") or REPO.parent / "shared" / "crds")


def crd_dirs() -> tuple[Path, ...]:
    """Every folder of platform CRDs, the shared one last (it wins for a kind in both): what a cluster must have."""
    return (VENDORED_CRDS, crd_dir())


def extra_crd_dirs() -> tuple[Path, ...]:
    """Karpenter-kwok's own CRDs (KWOKNodeClass, NodeOverlay), where ``make setup`` built the local control plane."""
    from infra.local.kube.cluster import component_dir

    d = component_dir("karpenter") / "crds"
    return (d,) if d.is_dir() else ()


@lru_cache(maxsize=None)
def _crd_schemas(*roots: str) -> dict[tuple[str, str], dict]:
    out = {}
    for root in roots:  # later folders win: the shared (production) CRDs come last
        for path in sorted(Path(root).glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def crd_schemas() -> dict[tuple[str, str], dict]:
    root = crd_dir()
    if not root.is_dir():
        raise FileNotFoundError(
            f"CRD schemas not found in {root}: set AGENTIC_CRD_DIR to a folder of upstream CRD YAML files"
        )
    return _crd_schemas(*map(str, (*extra_crd_dirs(), *crd_dirs())))


def _unknown_fields(obj, schema: dict, path: str) -> list[str]:
    errors: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return errors
    if isinstance(obj, dict):
        props = schema.get("properties")
        if props is not None:
            for k, v in obj.items():
                if k in props:
                    errors += _unknown_fields(v, props[k], f"{path}.{k}")
                elif not schema.get("additionalProperties"):
                    errors.append(f"{path}.{k}: unknown field")
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in obj.items():
                errors += _unknown_fields(v, schema["additionalProperties"], f"{path}.{k}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            errors += _unknown_fields(v, schema["items"], f"{path}[{i}]")
    return errors


def is_custom(obj: dict) -> bool:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def validate_custom_resource(obj: dict) -> list[str]:
    """Errors (empty when valid) of ``obj`` against its CRD's schema."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = crd_schemas().get(key)
    if schema is None:
        return [f"no CRD for {key[0]} {key[1]} in {crd_dir()}"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)
    ]
    errors += _unknown_fields(obj, schema, obj["kind"])
    return errors


def validate_kubernetes_object(obj: dict, version: str = KUBERNETES_VERSION) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{path or '<root>'}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')}: {exc}"]
    return []


def validate_manifest(obj: dict) -> list[str]:
    """Errors of one manifest: CRD schema for custom resources, Kubernetes' OpenAPI schema for the rest."""
    for field in ("apiVersion", "kind", "metadata"):
        if field not in obj:
            return [f"<root>: missing {field}"]
    return validate_custom_resource(obj) if is_custom(obj) else validate_kubernetes_object(obj)
