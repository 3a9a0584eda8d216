"""Schema validation of rendered Kubernetes manifests, offline.

Custom resources are checked against ``spec.versions[].schema.openAPIV3Schema`` of the vendored
upstream CRDs in ``infra/crds/`` (KubeRay, Karpenter, Prometheus Operator; see its README), with
unknown fields reported the way ``kubectl apply --validate=strict`` reports them (the API server
would silently prune them). There is no kube-apiserver here; this is the boundary we test at.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parent / "crds"


@lru_cache(maxsize=None)
def _crd_schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


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


def validate_custom_resource(obj: dict) -> list[str]:
    """Errors (empty when valid) of ``obj`` against its CRD's schema."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = _crd_schemas().get(key)
    if schema is None:
        return [f"no vendored CRD for {key[0]} {key[1]}"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]
    errors += _unknown_fields(obj, schema, obj["kind"])
    return errors
