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
    # user feedback is not part of an index rebuild: feedback_candidates runs in evaluation_job
    selection=dg.AssetSelection.groups("knowledge", "evaluation") - dg.AssetSelection.assets("feedback_candidates"),
    config={"ops": {"vector_index": {"config": {"rebuild": True}}, "rag_eval_run": {"config": {"answers": 0}}}},
    description="The knowledge pipeline, a full rebuild of the index into a new candidate generation, then the evaluation gate "
    "(retrieval metrics over the whole golden set, candidate vs serving): promoted atomically only if not worse.",
)

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.groups("evaluation"),
    description="Golden set -> RAG evaluation (retrieval metrics on the set; agent answers, ROUGE and the RAGAS judge on a sample) "
    "-> history and trend -> promotion gate -> serving index; user feedback -> candidate golden items and the daily "
    "feedback rate.",
)

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Model artifacts -> Ray Serve deployments (LLM + embedder) -> LiteLLM gateway, with endpoint checks.",
)

platform_job = dg.define_asset_job(
    "platform_job",
    selection=dg.AssetSelection.groups("platform"),
    description="Plan the platform (EKS Auto Mode, IAM, VPC, node pools, add-ons, workloads, OpenSearch). local: render and "
    "validate only. eks: plan against the account and cluster; apply only with `apply: true` in each asset's config.",
)

cost_job = dg.define_asset_job(
    "cost_job",
    # answer_costs reads the trace store, which runs only with the services (`agentic up`): materialized on its own
    selection=dg.AssetSelection.groups("cost") - dg.AssetSelection.assets("simulated_month", "answer_costs"),
    description="Bill of materials -> priced monthly report (reference table reproduced, omitted components, this platform), "
    "unit economics from measured throughput, and on eks the actual spend from Cost Explorer.",
)

simulation_job = dg.define_asset_job(
    "simulation_job",
    selection=dg.AssetSelection.assets("simulated_month"),
    description="A simulated month on the local control plane (`agentic cluster up`, AGENTIC_PLATFORM_TARGET=cluster): "
    "traffic drives replicas, Karpenter provisions and consolidates NodeClaims, the node-hours they had are priced.",
)


def governance_job_for(retention_days: int):
    return dg.define_asset_job(
        "governance_job",
        selection=dg.AssetSelection.groups("governance"),
        config={"ops": {"audit_trail": {"config": {"retention_days": retention_days}}}},
        description="The audit trail's retention and summary, and the API keys in force (AGENTIC_AUDIT_RETENTION_DAYS).",
    )
