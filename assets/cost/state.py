"""The cost stage's names and records: what it writes to the pipeline state store, and the measurements it reads."""

from pathlib import Path

from assets.stage import stage_asset

GROUP = "cost"
OWNERS = ["team:platform"]
asset = stage_asset(GROUP, OWNERS)
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
# the measurements the cost assets read at run time: infra/Dockerfile copies exactly these into the image (a unit
# test holds the two lists together), so on eks the measured rows are there, not silently absent
EMBED_MEASURED = "embed_pipeline_vs_served.json"  # the served embedder's rate: the simulated month's embed workers
MEASURED_FILES = ("answer_latency_1.5b.json", "gpu_decode_h100.json", EMBED_MEASURED)


# Everything the cost group records goes to the pipeline state store (on eks every step is its own pod).
COST_REPORT_RECORD = "cost/monthly_cost_report"
SIMULATION_RECORD = "cost/simulated_month"
BILL_RECORD = "cost/bill_of_materials"
UNIT_ECONOMICS_RECORD = "cost/unit_economics"
ANSWER_COSTS_RECORD = "cost/answer_costs"
