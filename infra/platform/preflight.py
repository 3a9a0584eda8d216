"""Before anything is applied: is the region one EKS serves (and the account has opted into), and do the account's
service quotas cover what the declared platform may ask for?

What the plan may ask for is the node pools' limits (a NodePool's ``cpu_limit`` caps the vCPU Karpenter launches for
it), counted against the EC2 vCPU quota of each instance class the pool's families draw on, plus the VPC's NAT
gateways, their Elastic IPs and the VPC itself. A quota that does not cover the need refuses the plan with the quota's
name, code, the need and the limit. What already runs in the account is not subtracted: the check is of the plan
alone, so a quota that covers it exactly can still be exhausted by other workloads.

Requests are boto3's (``service-quotas`` GetServiceQuota / GetAWSDefaultServiceQuota, ``ec2`` DescribeRegions), so
botocore validates their shapes before anything is sent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from infra.platform.config import PlatformConfig

# (service code, quota code, name) as the Service Quotas console lists them
ON_DEMAND = {
    "standard": ("ec2", "L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    "g": ("ec2", "L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("ec2", "L-417A185B", "Running On-Demand P instances"),
    "inf": ("ec2", "L-1945791B", "Running On-Demand Inf instances"),
}
SPOT = {
    "standard": ("ec2", "L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    "g": ("ec2", "L-3819A6DF", "All G and VT Spot Instance Requests"),
}
ELASTIC_IPS = ("ec2", "L-0263D0A3", "EC2-VPC Elastic IPs")
NAT_PER_AZ = ("vpc", "L-FE5A380F", "NAT gateways per Availability Zone")
VPCS = ("vpc", "L-F678F1CE", "VPCs per Region")


def instance_class(family: str) -> str:
    """The vCPU quota class of an instance family (g5 -> g, p5 -> p, inf2 -> inf, c7g -> standard)."""
    f = family.lower()
    if f.startswith(("g", "vt")):
        return "g"
    if f.startswith("p"):
        return "p"
    if f.startswith("inf"):
        return "inf"
    if f[:1] in "acdhimrtz":
        return "standard"
    raise ValueError(f"instance family {family!r} draws on a quota the preflight does not know (X, F, DL, Trn, ...)")


@dataclass
class QuotaNeed:
    service: str
    code: str
    name: str
    need: float
    why: str
    limit: float | None = None  # None: not looked up (rendered target) or the quota service has no value for it
    note: str = "not looked up"  # why the limit is missing

    @property
    def exceeded(self) -> bool:
        return self.limit is not None and self.need > self.limit

    def refusal(self, region: str) -> str:
        return (
            f"{self.name} ({self.service} quota {self.code}) in {region}: the plan needs {self.need:g}, "
            f"the account's limit is {self.limit:g} ({self.why}); request an increase in Service Quotas or lower it"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "exceeded": self.exceeded}


def quota_needs(cfg: PlatformConfig) -> list[QuotaNeed]:
    """What the declared platform may use, per quota."""
    by_quota: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for pool in cfg.node_pools:
        table = ON_DEMAND if "on-demand" in pool.capacity_types else SPOT
        for cls in sorted({instance_class(f) for f in pool.instance_families}):
            # a spot-only pool of a class without a known spot quota is counted against its on-demand quota
            quota = table.get(cls) or ON_DEMAND[cls]
            by_quota.setdefault(quota, []).append((pool.name, pool.cpu_limit))
    needs = [
        QuotaNeed(
            service,
            code,
            f"{name} (vCPU)",
            float(sum(v for _, v in pools)),
            "node pools " + ", ".join(f"{p} up to {v} vCPU" for p, v in pools),
        )
        for (service, code, name), pools in sorted(by_quota.items(), key=lambda kv: kv[0][1])
    ]
    if not cfg.vpc.existing_subnet_ids:
        needs.append(QuotaNeed(*VPCS, 1.0, "the platform's VPC"))
        if cfg.vpc.nat_gateways:
            needs.append(QuotaNeed(*ELASTIC_IPS, float(cfg.vpc.nat_gateways), f"{cfg.vpc.nat_gateways} NAT gateway(s)"))
            needs.append(QuotaNeed(*NAT_PER_AZ, 1.0, "one NAT gateway per AZ at most"))
    return needs


def region_problems(cfg: PlatformConfig, ec2=None) -> list[str]:
    """The region must be one EKS serves (botocore's endpoint data) and, asked of the account, enabled for it."""
    import boto3

    problems = []
    if cfg.region not in boto3.session.Session().get_available_regions("eks"):
        problems.append(f"region {cfg.region!r} is not one where Amazon EKS is available")
    if ec2 is not None and not problems:
        regions = ec2.describe_regions(RegionNames=[cfg.region], AllRegions=True)["Regions"]
        status = regions[0].get("OptInStatus", "opt-in-not-required") if regions else "absent"
        if status not in ("opt-in-not-required", "opted-in"):
            problems.append(f"region {cfg.region!r} is not enabled for this account (opt-in status {status})")
    return problems


def look_up(quotas, needs: list[QuotaNeed]) -> list[QuotaNeed]:
    """Each need's limit: the account's applied value, else AWS's default; None where Service Quotas has neither."""
    from botocore.exceptions import ClientError

    for n in needs:
        for call in (quotas.get_service_quota, quotas.get_aws_default_service_quota):
            try:
                n.limit = float(call(ServiceCode=n.service, QuotaCode=n.code)["Quota"]["Value"])
                break
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = exc.response["Error"]["Code"]
                if code != "NoSuchResourceException" and status < 500:
                    raise
                # no value, or the service failed: reported as unchecked, never as covered
                n.note = f"{call.__name__}: {code}"
    return needs


def preflight(cfg: PlatformConfig, ec2=None, quotas=None) -> dict:
    """Region problems, quota needs with their limits (when clients are given) and the refusals; ``ok`` when none."""
    problems = region_problems(cfg, ec2)
    needs = quota_needs(cfg)
    if quotas is not None:
        look_up(quotas, needs)
    refusals = problems + [n.refusal(cfg.region) for n in needs if n.exceeded]
    return {
        "ok": not refusals,
        "region": cfg.region,
        "refusals": refusals,
        "quotas": [n.as_dict() for n in needs],
        "unchecked": [n.code for n in needs if n.limit is None],
    }
