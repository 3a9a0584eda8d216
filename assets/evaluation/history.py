"""eval_history, the promotion gate, and serving_index: every run recorded, the candidate promoted only past the gate."""

import base64
import json
import time

import dagster as dg
import pyarrow as pa

from assets.evaluation.run import RETRIEVAL_MODES, rag_eval_run
from assets.evaluation.state import (
    HISTORY,
    HISTORY_TABLE,
    TREND_PNG,
    asset,
    latest_feedback_rate,
    read_history,
    read_last_run,
)
from assets.knowledge.state import read_candidate, save_candidate
from assets.metadata import md_table
from core.evaluation import JUDGE_METRICS, promotion_gate
from core.generations import is_pending, transition
from core.plots import png_bytes
from resources.state_store import PipelineStateStore
from resources.vector_store import VectorStoreResource

RETRIEVAL_GATE = tuple(f"{m}_{n}" for m in RETRIEVAL_MODES for n in ("id_context_recall", "mrr"))


class GateConfig(dg.Config):
    retrieval_tolerance: float = 0.02  # deterministic metrics: small
    judge_tolerance: float = 0.05  # judged metrics are noisier
    max_judge_failure_rate: float = 0.2


def decide(run: dict, history: list[dict], cfg: GateConfig) -> dict:
    """Gate verdict for a run: retrieval vs the serving generation measured in the same run; judged metrics vs the
    latest history entry of the serving generation on the same golden set (when there is one)."""
    if not run["is_candidate"]:
        return {"passed": True, "reasons": ["evaluated the serving generation: nothing to promote"], "compared": {}}
    retrieval = promotion_gate(run["summary"], run["baseline_retrieval"], cfg.retrieval_tolerance, RETRIEVAL_GATE)
    prior = [
        h
        for h in history
        if h["generation"] == run["serving_generation"] and h["golden_version"] == run["golden_version"]
    ]
    judged_baseline = json.loads(prior[-1]["summary"]) if prior else None
    judged_metrics = [m for m in JUDGE_METRICS if run["summary"].get(f"{m}_n") or run["summary"].get(f"{m}_failures")]
    judged = promotion_gate(
        run["summary"], judged_baseline, cfg.judge_tolerance, judged_metrics, cfg.max_judge_failure_rate
    )
    reasons = [f"retrieval: {r}" for r in retrieval.reasons]
    if judged_metrics:
        reasons += [f"judge: {r}" for r in judged.reasons]
    return {
        "passed": retrieval.passed and judged.passed,
        "reasons": reasons,
        "compared": {**retrieval.compared, **judged.compared},
    }


def _trend_png(history: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    series = ["hybrid_id_context_recall", "dense_id_context_recall", "hybrid_mrr", "rouge_l", *JUDGE_METRICS]
    xs = list(range(1, len(history) + 1))
    for name in series:
        ys = [json.loads(h["summary"]).get(name) for h in history]
        if any(y is not None for y in ys):
            ax.plot(xs, [y if y is not None else float("nan") for y in ys], marker="o", label=name)
    for x, h in zip(xs, history):
        if h["is_candidate"] and not json.loads(h["gate"]).get("passed", True):
            ax.axvline(x, color="red", alpha=0.3)
    ax.set_xticks(xs)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("evaluation run")
    ax.set_title("RAG evaluation trend (red: candidate rejected)")
    ax.legend(fontsize=6, loc="lower left", ncol=2)
    fig.tight_layout()
    return png_bytes(fig)


@asset(
    kinds={"python"},
    deps=[rag_eval_run],
    description="Every evaluation run appended with its index generation, models, config, summary and gate verdict; a trend "
    "plot (PNG) of the main metrics. A candidate that fails the gate is marked rejected here (kept for inspection).",
)
def eval_history(
    context: dg.AssetExecutionContext, config: GateConfig, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    run = read_last_run(pipeline_state)
    if run is None:
        raise dg.Failure("no evaluation run recorded: materialize rag_eval_run first")
    history = read_history(pipeline_state)
    gate = decide(run, history, config)
    record = {
        "run_id": run["run_id"],
        "at": time.time(),
        "golden_version": run["golden_version"],
        "generation": run["generation"],
        "serving_generation": run["serving_generation"],
        "is_candidate": run["is_candidate"],
        "models": json.dumps(run["models"]),
        "config": json.dumps(run["config"]),
        "summary": json.dumps(run["summary"]),
        "baseline": json.dumps(run["baseline_retrieval"]),
        "gate": json.dumps(gate),
    }
    history = [h for h in history if h["run_id"] != record["run_id"]] + [record]
    pipeline_state.write(HISTORY_TABLE, pa.Table.from_pylist(history, schema=HISTORY))
    if run["is_candidate"] and not gate["passed"]:
        candidate = read_candidate(pipeline_state)
        if is_pending(candidate) and candidate.generation == run["generation"]:
            save_candidate(pipeline_state, transition(candidate, "rejected", "; ".join(gate["reasons"])))
        context.log.warning(f"candidate {run['generation']} rejected: {gate['reasons']}")
    png = _trend_png(history)
    pipeline_state.put_bytes(TREND_PNG, png)
    rows = [
        {
            "at": time.strftime("%Y-%m-%d %H:%M", time.gmtime(h["at"])),
            "generation": h["generation"],
            "candidate": h["is_candidate"],
            "gate": "pass" if json.loads(h["gate"])["passed"] else "FAIL",
            **{
                k: json.loads(h["summary"]).get(k)
                for k in ("hybrid_id_context_recall", "dense_id_context_recall", "rouge_l", "faithfulness")
            },
        }
        for h in history[-10:]
    ]
    # users' view beside the judge's: the latest day of feedback_candidates' rollup (no dependency on it, so a feedback
    # problem never holds up the promotion gate; the date says how fresh it is)
    feedback_day = latest_feedback_rate(pipeline_state)
    feedback_rate = feedback_day["feedback_rate"] if feedback_day else None
    negative_rate = feedback_day["negative_rate"] if feedback_day else None
    return dg.MaterializeResult(
        metadata={
            "runs": len(history),
            "gate_passed": gate["passed"],
            "gate_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in gate["reasons"])),
            "trend": dg.MetadataValue.md(f"![trend](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "trend_png": f"{pipeline_state.describe()}/{TREND_PNG}",
            "recent": md_table(rows, list(rows[0].keys()), limit=10),
            "feedback_rate": dg.MetadataValue.float(feedback_rate)
            if feedback_rate is not None
            else dg.MetadataValue.null(),
            "feedback_negative_rate": dg.MetadataValue.float(negative_rate)
            if negative_rate is not None
            else dg.MetadataValue.null(),
            "feedback_date": feedback_day["date"] if feedback_day else "",
        }
    )


@dg.asset_check(
    asset=eval_history,
    blocking=True,
    description="Promotion gate: the candidate generation is not worse than the serving "
    "one beyond the tolerance (retrieval measured side by side; judged metrics against the serving generation's last "
    "evaluation) and judge failures stay rare. Failing blocks serving_index: the old generation keeps serving.",
)
def index_promotion_gate(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    history = read_history(pipeline_state)
    if not history:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no evaluation recorded"})
    last = history[-1]
    gate = json.loads(last["gate"])
    return dg.AssetCheckResult(
        passed=gate["passed"],
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(gate["reasons"]),
        metadata={
            "generation": last["generation"],
            "candidate": last["is_candidate"],
            "compared": dg.MetadataValue.json(gate["compared"]),
        },
    )


@asset(
    kinds={"lancedb", "opensearch"},
    deps=[eval_history],
    description="Switches the serving pointer to the candidate generation once the promotion gate passed (atomic); the previous "
    "generation is kept for rollback. Nothing to do when no candidate is pending.",
)
def serving_index(
    context: dg.AssetExecutionContext, pipeline_state: PipelineStateStore, vector_store: VectorStoreResource
) -> dg.MaterializeResult:
    candidate = read_candidate(pipeline_state)
    before = vector_store.serving_generation()
    history = read_history(pipeline_state)
    last = history[-1] if history else None
    if is_pending(candidate):
        if not last or last["generation"] != candidate.generation or not json.loads(last["gate"])["passed"]:
            raise dg.Failure(f"candidate {candidate.generation} has no passing evaluation; run rag_eval_run first")
        vector_store.promote(candidate.generation)
        save_candidate(pipeline_state, transition(candidate, "promoted", f"gate passed in run {last['run_id']}"))
        context.log.info(f"serving generation switched {before} -> {candidate.generation}")
    after = vector_store.serving_generation()
    return dg.MaterializeResult(
        metadata={"serving_generation": after or "", "previous": before or "", "promoted_this_run": after != before}
    )
