"""Jobs of the code location."""

import dagster as dg

knowledge_job = dg.define_asset_job(
    "knowledge_job",
    selection=dg.AssetSelection.groups("knowledge"),
    description="Documents -> parsed -> chunks -> embeddings (Ray) -> index; incremental.",
)

MAIN_JOB = "knowledge_job"

rebuild_index_job = dg.define_asset_job(
    "rebuild_index_job",
    selection=dg.AssetSelection.groups("knowledge"),
    config={"ops": {"vector_index": {"config": {"rebuild": True}}}},
    description="The knowledge pipeline, then a full rebuild of the index into a new generation, switched atomically.",
)

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Model artifacts -> Ray Serve deployments (LLM + embedder) -> LiteLLM gateway, with endpoint checks.",
)
