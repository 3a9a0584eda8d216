"""What every stage's definitions share: one asset decorator per stage (its group and owners set once), and the
stopped UTC schedule each stage ships."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dagster as dg

AssetDecorator = Callable[[Callable[..., Any]], dg.AssetsDefinition]


def stage_asset(group: str, owners: list[str], **defaults: Any) -> Callable[..., AssetDecorator]:
    """``dg.asset`` with the stage's group, owners and any other shared argument given; each asset adds its own."""
    return functools.partial(dg.asset, group_name=group, owners=owners, **defaults)


def stopped_schedule(name: str, job: Any, cron: str, description: str) -> dg.ScheduleDefinition:
    """A schedule in UTC that starts stopped: a deployment turns on the ones it wants."""
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
