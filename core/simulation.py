"""A simulated month on the local control plane: traffic -> replicas -> the nodes Karpenter really provisions -> cost.

Pure parts only: the traffic profile, the replica policy, and the pricing of NodeClaim lifetimes recorded on a
time-compressed clock (one simulated hour = ``step_s`` wall seconds). The cluster driver is the platform resource's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Answers per hour over a clinical day (UTC hours 0-23): night trough, morning ramp, midday peak, evening tail.
DEFAULT_PROFILE = (40, 25, 20, 20, 30, 60, 180, 420, 760, 980, 1040, 1000, 900, 960, 1020, 940, 780, 560, 380, 260,
                   180, 120, 80, 55)  # fmt: skip
DAYS_PER_MONTH = 30.4


@dataclass(frozen=True)
class ReplicaPolicy:
    """How many replicas an hour of traffic needs: capacity per replica at a target utilization, within bounds."""

    answers_per_replica_hour: float
    min_replicas: int = 0
    max_replicas: int = 2
    target_utilization: float = 0.7

    def replicas(self, answers_per_hour: float) -> int:
        need = math.ceil(answers_per_hour / (self.answers_per_replica_hour * self.target_utilization))
        return max(self.min_replicas, min(self.max_replicas, need))


@dataclass
class NodeSpan:
    """One NodeClaim's life on the simulated clock (hours since the start)."""

    name: str
    pool: str
    instance_type: str
    start_h: float
    end_h: float | None = None

    def hours(self, until_h: float) -> float:
        return max(0.0, (self.end_h if self.end_h is not None else until_h) - self.start_h)


@dataclass
class Timeline:
    step_s: float  # wall seconds per simulated hour
    spans: dict[str, NodeSpan] = field(default_factory=dict)
    replicas: list[dict] = field(default_factory=list)  # per simulated hour: {"hour", "answers", <workload>: n}
    nodes: list[dict] = field(default_factory=list)  # samples: {"hour", <pool>: live nodes}

    def observe(self, wall_s: float, claims: list[dict]) -> None:
        """Record the NodeClaims alive at ``wall_s`` seconds into the run (name, nodepool, instance type)."""
        hour = wall_s / self.step_s
        alive = set()
        for c in claims:
            alive.add(c["name"])
            span = self.spans.get(c["name"])
            if span is None:
                self.spans[c["name"]] = NodeSpan(c["name"], c["pool"], c["instance_type"], hour)
            elif not span.instance_type and c["instance_type"]:
                # Karpenter labels a claim's instance type once it resolves the launch, not at creation
                span.instance_type = c["instance_type"]
        for name, span in self.spans.items():
            if span.end_h is None and name not in alive:
                span.end_h = hour
        sample: dict = {"hour": round(hour, 3)}
        for c in claims:
            sample[c["pool"]] = sample.get(c["pool"], 0) + 1
        self.nodes.append(sample)

    def node_hours(self, until_h: float) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for s in self.spans.values():
            if not s.instance_type:
                continue  # a claim deleted before it launched was never an instance: nothing to price
            key = (s.pool, s.instance_type)
            out[key] = out.get(key, 0.0) + s.hours(until_h)
        return out


def price_timeline(timeline: Timeline, until_h: float, book, days_per_month: float = DAYS_PER_MONTH) -> list[dict]:
    """Node-hours per (pool, instance type) over the simulated span, priced on demand, scaled from the span to a
    month (the span is one representative day when the profile has 24 hours)."""
    scale = days_per_month * 24.0 / until_h
    lines = []
    for (pool, itype), hours in sorted(timeline.node_hours(until_h).items()):
        rate = book.price(f"ec2_{itype}_hour")
        lines.append(
            {
                "pool": pool,
                "instance_type": itype,
                "node_hours_simulated": round(hours, 3),
                "node_hours_month": round(hours * scale, 1),
                "usd_per_hour": rate,
                "monthly_usd": round(hours * scale * rate, 2),
            }
        )
    return lines
