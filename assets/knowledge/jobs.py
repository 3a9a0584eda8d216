"""The knowledge stage's jobs and schedule."""

import dagster as dg

from assets.stage import stopped_schedule

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

nightly_reembedding_schedule = stopped_schedule(
    "nightly_reembedding",
    knowledge_job,
    "0 2 * * *",
    "Nightly: picks up embedding-model or chunker changes (new ids re-embed, a new model builds a new "
    "generation); cheap when nothing changed, since every step diffs against the last run.",
)
