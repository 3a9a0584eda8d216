"""The VPC: subnets over the availability zones, public and private, with their routes; plan/apply."""

from __future__ import annotations

import ipaddress

from infra.platform.aws.common import (
    Action,
)
from infra.platform.config import PlatformConfig

# ------------------------------------------------------------------ VPC


def subnet_layout(cidr: str, azs: list[str]) -> list[dict]:
    """One public (/20) and one private (/18) subnet per AZ, carved deterministically from the VPC CIDR."""
    net = ipaddress.ip_network(cidr)
    private = list(net.subnets(new_prefix=18))
    public = list(private[-1].subnets(new_prefix=20))
    out = []
    for i, az in enumerate(azs):
        out.append({"az": az, "tier": "private", "cidr": str(private[i])})
        out.append({"az": az, "tier": "public", "cidr": str(public[i])})
    return out


def plan_vpc(ec2, cfg: PlatformConfig) -> list[Action]:
    if cfg.vpc.existing_subnet_ids:
        found = ec2.describe_subnets(SubnetIds=cfg.vpc.existing_subnet_ids)["Subnets"]
        return [Action("vpc", "existing", "none", request={"subnets": [s["SubnetId"] for s in found]})]
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:agentic/cluster", "Values": [cfg.cluster_name]}])["Vpcs"]
    azs = [
        z["ZoneName"]
        for z in ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])[
            "AvailabilityZones"
        ]
    ][: cfg.vpc.azs]
    layout = subnet_layout(cfg.vpc.cidr, azs)
    if not vpcs:
        return [
            Action(
                "vpc",
                cfg.cluster_name,
                "create",
                request={"cidr": cfg.vpc.cidr, "subnets": layout, "nat_gateways": cfg.vpc.nat_gateways},
            )
        ]
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    nats = [
        n
        for n in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
        if n["State"] not in ("deleted", "deleting")
    ]
    changes = {}
    if {s["CidrBlock"] for s in subnets} != {s["cidr"] for s in layout}:
        changes["subnets"] = {
            "have": sorted(s["CidrBlock"] for s in subnets),
            "want": sorted(s["cidr"] for s in layout),
        }
    if len(nats) != cfg.vpc.nat_gateways:
        changes["nat_gateways"] = {"have": len(nats), "want": cfg.vpc.nat_gateways}
    return [
        Action(
            "vpc",
            vpc_id,
            "update" if changes else "none",
            changes,
            {"subnets": layout, "nat_gateways": cfg.vpc.nat_gateways},
        )
    ]


def apply_vpc(ec2, cfg: PlatformConfig, action: Action) -> dict[str, list[str]]:
    """Creates the VPC (public subnets with an internet gateway, private subnets behind NAT) and returns subnet ids
    by tier. Updates to an existing VPC's layout are reported by the plan and left to an operator."""

    def spec(kind: str, name: str) -> list[dict]:
        return [
            {
                "ResourceType": kind,
                "Tags": [{"Key": "agentic/cluster", "Value": cfg.cluster_name}, {"Key": "Name", "Value": name}],
            }
        ]

    if action.action == "none" and action.name == "existing":
        return {"private": action.request["subnets"], "public": []}
    if action.action != "create":
        vpc_id = action.name
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
        tier = lambda s: next((t["Value"] for t in s.get("Tags", []) if t["Key"] == "agentic/tier"), "private")  # noqa: E731
        return {
            "private": [s["SubnetId"] for s in subnets if tier(s) == "private"],
            "public": [s["SubnetId"] for s in subnets if tier(s) == "public"],
        }
    vpc_id = ec2.create_vpc(CidrBlock=cfg.vpc.cidr, TagSpecifications=spec("vpc", cfg.cluster_name))["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", cfg.cluster_name))["InternetGateway"][
        "InternetGatewayId"
    ]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    public_rt = ec2.create_route_table(
        VpcId=vpc_id, TagSpecifications=spec("route-table", f"{cfg.cluster_name}-public")
    )["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ids: dict[str, list[str]] = {"private": [], "public": []}
    by_az: dict[str, dict[str, str]] = {}
    for s in action.request["subnets"]:
        t = spec("subnet", f"{cfg.cluster_name}-{s['tier']}-{s['az']}")
        t[0]["Tags"] += [
            {"Key": "agentic/tier", "Value": s["tier"]},
            {
                "Key": "kubernetes.io/role/elb" if s["tier"] == "public" else "kubernetes.io/role/internal-elb",
                "Value": "1",
            },
            {"Key": "karpenter.sh/discovery", "Value": cfg.cluster_name},
        ]
        sid = ec2.create_subnet(VpcId=vpc_id, CidrBlock=s["cidr"], AvailabilityZone=s["az"], TagSpecifications=t)[
            "Subnet"
        ]["SubnetId"]
        ids[s["tier"]].append(sid)
        by_az.setdefault(s["az"], {})[s["tier"]] = sid
        if s["tier"] == "public":
            ec2.associate_route_table(RouteTableId=public_rt, SubnetId=sid)
    nat_ids = []
    for az in list(by_az)[: action.request["nat_gateways"]]:
        eip = ec2.allocate_address(Domain="vpc", TagSpecifications=spec("elastic-ip", f"{cfg.cluster_name}-nat-{az}"))[
            "AllocationId"
        ]
        nat_ids.append(
            (
                az,
                ec2.create_nat_gateway(
                    SubnetId=by_az[az]["public"],
                    AllocationId=eip,
                    TagSpecifications=spec("natgateway", f"{cfg.cluster_name}-{az}"),
                )["NatGateway"]["NatGatewayId"],
            )
        )
    for i, (az, subnets) in enumerate(by_az.items()):
        rt = ec2.create_route_table(
            VpcId=vpc_id, TagSpecifications=spec("route-table", f"{cfg.cluster_name}-private-{az}")
        )["RouteTable"]["RouteTableId"]
        if nat_ids:
            nat = next((n for a, n in nat_ids if a == az), nat_ids[0][1])  # one NAT per AZ, or all share the one
            ec2.create_route(RouteTableId=rt, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
        ec2.associate_route_table(RouteTableId=rt, SubnetId=subnets["private"])
    return ids
