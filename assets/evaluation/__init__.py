"""Evaluation as assets: a versioned golden set, RAGAS runs, their history, and the gate that promotes an index.

eval_questions -> rag_eval_run -> eval_history --[index_promotion_gate, blocking]--> serving_index
eval_questions_hard (the harder set: paraphrased yes/no questions with the conclusion's polarity)
feedback_candidates (user feedback -> candidate golden items for review, daily feedback rate)

One module per step; ``state`` owns the tables and records.
"""

import dagster as dg

from assets.evaluation.feedback import feedback_candidates
from assets.evaluation.golden import GoldenSetConfig, eval_questions
from assets.evaluation.golden_hard import eval_questions_hard
from assets.evaluation.history import GateConfig, decide, eval_history, index_promotion_gate, serving_index
from assets.evaluation.jobs import evaluation_job, weekly_evaluation_schedule
from assets.evaluation.run import EvalConfig, eval_quality_floors, rag_eval_run
from assets.evaluation.sensors import evaluate_after_reembedding

evaluation_assets = [
    eval_questions,
    eval_questions_hard,
    rag_eval_run,
    eval_history,
    serving_index,
    feedback_candidates,
]
evaluation_checks = [eval_quality_floors, index_promotion_gate]
evaluation_defs = dg.Definitions(
    assets=evaluation_assets,
    asset_checks=evaluation_checks,
    jobs=[evaluation_job],
    schedules=[weekly_evaluation_schedule],
    sensors=[evaluate_after_reembedding],
)

__all__ = [
    "EvalConfig",
    "GateConfig",
    "GoldenSetConfig",
    "decide",
    "eval_history",
    "eval_questions",
    "eval_questions_hard",
    "evaluate_after_reembedding",
    "evaluation_defs",
    "evaluation_job",
    "evaluation_assets",
    "evaluation_checks",
    "feedback_candidates",
    "index_promotion_gate",
    "rag_eval_run",
    "serving_index",
]
