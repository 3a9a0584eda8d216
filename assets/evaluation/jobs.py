"""The evaluation stage's job and schedule."""

import dagster as dg

from assets.stage import stopped_schedule

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.groups("evaluation"),
    description="Golden set -> RAG evaluation (retrieval metrics on the set; agent answers, ROUGE and the RAGAS judge on a sample) "
    "-> history and trend -> promotion gate -> serving index; user feedback -> candidate golden items and the daily "
    "feedback rate.",
)

weekly_evaluation_schedule = stopped_schedule(
    "weekly_evaluation",
    evaluation_job,
    "0 4 * * 1",
    "Weekly: the RAG evaluation on the golden set (judged sample included), appended to the trend.",
)
