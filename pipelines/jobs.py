"""Jobs of the code location."""

import dagster as dg

knowledge_job = dg.define_asset_job(
    "knowledge_job",
    selection=dg.AssetSelection.groups("knowledge"),
    description="Documents -> parsed -> chunks -> embeddings (Ray) -> index; incremental.",
)

MAIN_JOB = "knowledge_job"
