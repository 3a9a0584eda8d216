"""The cost stage's jobs and schedule."""

import dagster as dg

from assets.stage import stopped_schedule

cost_job = dg.define_asset_job(
    "cost_job",
    # answer_costs reads the trace store, which runs only with the services (`agentic up`): materialized on its own
    selection=(dg.AssetSelection.groups("cost") - dg.AssetSelection.assets("simulated_month", "answer_costs"))
    | dg.AssetSelection.assets("capacity_plan"),
    description="Bill of materials -> priced monthly report (reference table reproduced, omitted components, this platform), "
    "unit economics from measured throughput, the capacity plan (the cheapest hardware variant for the traffic), and on "
    "eks the actual spend from Cost Explorer.",
)

simulation_job = dg.define_asset_job(
    "simulation_job",
    selection=dg.AssetSelection.assets("capacity_plan", "simulated_month"),
    description="A simulated month on the local control plane (`agentic cluster up`, AGENTIC_PLATFORM_TARGET=cluster): "
    "traffic drives replicas (sized by the capacity plan), Karpenter provisions and consolidates NodeClaims, the node-hours they had are priced.",
)

monthly_cost_schedule = stopped_schedule(
    "monthly_cost_report",
    cost_job,
    "0 6 2 * *",
    "Monthly, on the 2nd (Cost Explorer has the last month by then): the cost report and actual spend.",
)
