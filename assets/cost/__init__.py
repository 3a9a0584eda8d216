"""The cost stage: the bill of materials from the platform config, a dated price book, the monthly report (the
reference design's table reproduced line by line, then what it leaves out), unit economics from measured throughput,
(eks) actual spend from Cost Explorer, a simulated month on the local control plane, and the cost per answer.

price_book, bill_of_materials -> monthly_cost_report;  price_book -> unit_economics;  monthly_cost_report -> actual_spend;
price_book, traces -> answer_costs (cost per answer by route and model, from the answers' own traces)

One module per report; ``state`` owns the records other stages and the CLI read.
"""

import dagster as dg

from assets.cost.answers import answer_costs
from assets.cost.jobs import cost_job, monthly_cost_schedule, simulation_job
from assets.cost.measured import measured_throughputs
from assets.cost.reports import actual_spend, bill_of_materials, monthly_cost_report, price_book, unit_economics
from assets.cost.simulation import simulated_month
from assets.cost.state import (
    ANSWER_COSTS_RECORD,
    COST_REPORT_RECORD,
    MEASURED_FILES,
    RESULTS,
    SIMULATION_RECORD,
)

cost_assets = [
    price_book,
    bill_of_materials,
    monthly_cost_report,
    unit_economics,
    actual_spend,
    simulated_month,
    answer_costs,
]
cost_defs = dg.Definitions(assets=cost_assets, jobs=[cost_job, simulation_job], schedules=[monthly_cost_schedule])

__all__ = [
    "ANSWER_COSTS_RECORD",
    "COST_REPORT_RECORD",
    "MEASURED_FILES",
    "RESULTS",
    "SIMULATION_RECORD",
    "answer_costs",
    "bill_of_materials",
    "cost_assets",
    "cost_defs",
    "measured_throughputs",
    "simulated_month",
]
