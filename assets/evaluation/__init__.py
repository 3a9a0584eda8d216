"""Evaluation as assets: a versioned golden set, RAGAS runs, their history, and the gate that promotes an index.

eval_questions -> rag_eval_run -> eval_history --[index_promotion_gate, blocking]--> serving_index

One module per step; ``state`` owns the tables and records.
"""

from assets.evaluation.golden import GoldenSetConfig, eval_questions
from assets.evaluation.history import GateConfig, decide, eval_history, index_promotion_gate, serving_index
from assets.evaluation.run import EvalConfig, eval_quality_floors, rag_eval_run

evaluation_assets = [eval_questions, rag_eval_run, eval_history, serving_index]
evaluation_checks = [eval_quality_floors, index_promotion_gate]

__all__ = [
    "EvalConfig",
    "GateConfig",
    "GoldenSetConfig",
    "decide",
    "eval_history",
    "eval_questions",
    "evaluation_assets",
    "evaluation_checks",
    "index_promotion_gate",
    "rag_eval_run",
    "serving_index",
]
