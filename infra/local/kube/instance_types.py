"""Instance types for Karpenter's kwok provider, mirroring the platform's node pools and priced from the price book.

Karpenter-kwok reads a JSON list (``INSTANCE_TYPES_FILE_PATH``) in its current format: name, architecture,
operatingSystems, resources and offerings (price, requirements on capacity type and zone). Only instance types the
price book prices and a pool's families admit are offered, so what Karpenter provisions locally is what the bill of
materials prices on EKS. Spot prices move hourly and are not in the book: offerings are on-demand only.
"""

from __future__ import annotations

from infra.platform.config import PlatformConfig

# AWS instance specs (vCPU, GiB, accelerators, arch) for the types the price book carries.
SPECS: dict[str, dict] = {
    "m7i.large": {"cpu": 2, "memory_gi": 8, "arch": "amd64"},
    "m7i.xlarge": {"cpu": 4, "memory_gi": 16, "arch": "amd64"},
    "m7i.2xlarge": {"cpu": 8, "memory_gi": 32, "arch": "amd64"},
    "m6g.large": {"cpu": 2, "memory_gi": 8, "arch": "arm64"},
    "c7g.2xlarge": {"cpu": 8, "memory_gi": 16, "arch": "arm64"},
    "c7g.4xlarge": {"cpu": 16, "memory_gi": 32, "arch": "arm64"},
    "g5.xlarge": {"cpu": 4, "memory_gi": 16, "arch": "amd64", "nvidia.com/gpu": 1},
    "g5.12xlarge": {"cpu": 48, "memory_gi": 192, "arch": "amd64", "nvidia.com/gpu": 4},
    "g6.xlarge": {"cpu": 4, "memory_gi": 16, "arch": "amd64", "nvidia.com/gpu": 1},
    "g6.12xlarge": {"cpu": 48, "memory_gi": 192, "arch": "amd64", "nvidia.com/gpu": 4},
    "inf2.xlarge": {"cpu": 4, "memory_gi": 16, "arch": "amd64", "aws.amazon.com/neuron": 1},
    "inf2.8xlarge": {"cpu": 32, "memory_gi": 128, "arch": "amd64", "aws.amazon.com/neuron": 1},
    "p5.48xlarge": {"cpu": 192, "memory_gi": 2048, "arch": "amd64", "nvidia.com/gpu": 8},
}
ACCELERATORS = ("nvidia.com/gpu", "aws.amazon.com/neuron")


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def kwok_instance_types(cfg: PlatformConfig, book) -> list[dict]:
    """One entry per priced instance type that some pool admits (family and architecture), with zones from the VPC."""
    zones = [f"{cfg.region}{c}" for c in "abcdef"[: cfg.vpc.azs]]
    admitted = {(f, p.arch) for p in cfg.node_pools for f in p.instance_families}
    out = []
    for name, spec in SPECS.items():
        key = f"ec2_{name}_hour"
        if (family(name), spec["arch"]) not in admitted or key not in book.prices:
            continue
        resources = {"cpu": str(spec["cpu"]), "memory": f"{spec['memory_gi']}Gi", "pods": "110"}
        resources.update({k: str(spec[k]) for k in ACCELERATORS if spec.get(k)})
        out.append(
            {
                "name": name,
                "architecture": spec["arch"],
                "operatingSystems": ["linux"],
                "resources": resources,
                "offerings": [
                    {
                        "Price": book.price(key),
                        "Available": True,
                        "Requirements": [
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
                        ],
                    }
                    for zone in zones
                ],
            }
        )
    return out
