"""rag_eval_run: the candidate (or serving) index generation evaluated on the golden set; quality floors as a check.

ID-based retrieval metrics for every question (dense and hybrid, side by side with the serving generation when a
candidate is evaluated); for a sample, the RAG agent's answers with ROUGE-L and the RAGAS judge.
"""

import json
import time

import dagster as dg
import pyarrow as pa

from agents.resource import AnswerServiceResource
from assets.evaluation.golden import eval_questions
from assets.evaluation.state import LAST_RUN_RECORD, RESULTS_TABLE, RETRIEVAL_MODES, asset, read_golden, read_last_run
from assets.knowledge.state import read_candidate
from assets.metadata import md_table
from core.access import ReadScope
from core.evaluation import ID_METRICS, JUDGE_METRICS, TEXT_METRICS, id_metrics, rouge_l, summarize
from core.generations import is_pending
from core.progress import Progress
from infra.platform.config import k8s_step
from resources.embedder import EmbedderResource
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource
from resources.state_store import PipelineStateStore
from resources.vector_store import VectorStoreResource


class EvalConfig(dg.Config):
    limit: int = 0  # questions of the set to evaluate (0 = all); a sample for CI
    answers: int = 24  # of those, how many go through the agent + ROUGE + RAGAS judge (-1 = all, 0 = retrieval only)
    judge: bool = True  # RAGAS judge metrics for the answered questions
    k: int = 5  # contexts per question (the agent's k)
    judge_timeout_s: float = 240.0
    judge_attempts: int = 2
    # The evaluation runs as this principal: its retrieval and answers see only these groups' documents ("*": all,
    # which measures the index itself; name a user's groups to measure what they get).
    principal: str = "evaluator"
    groups: list[str] = ["*"]


def _logger(context: dg.AssetExecutionContext, progress: Progress):
    """A step's progress line when one is due (every few seconds or tenth of the questions, and at the end)."""

    def log(due: bool) -> None:
        if due:
            context.log.info(progress.line(), extra={"progress": progress.snapshot()})

    return log


def _retrieval_rows(
    retriever: RetrieverResource,
    items: list[dict],
    generation: str,
    k: int,
    scope: ReadScope,
    on_row=lambda: None,
) -> list[dict]:
    rows = []
    for it in items:
        row = {"id": it["id"]}
        for mode in RETRIEVAL_MODES:
            hits = retriever.search(it["question"], k=k, mode=mode, generation=generation, scope=scope)
            for name, v in id_metrics([h.doc_key for h in hits], it["gold_doc_keys"]).items():
                row[f"{mode}_{name}"] = v
        rows.append(row)
        on_row()
    return rows


def _retrieval_summary(rows: list[dict]) -> dict:
    return summarize(rows, [f"{m}_{n}" for m in RETRIEVAL_MODES for n in ID_METRICS])


@asset(
    op_tags=k8s_step("1", "4Gi", "6Gi"),
    kinds={"ragas", "python"},
    deps=[eval_questions],
    description="Evaluates the candidate index generation (or the serving one when none is pending): ID-based context "
    "precision/recall, hit@k and MRR for dense and hybrid retrieval over the golden set; for a sample, the RAG agent's answers "
    "with ROUGE-L and RAGAS 0.4 faithfulness, response relevancy, context precision and context recall, judged by the "
    "gateway's judge model. Judge failures are retried, then recorded as failures, never as scores.",
)
def rag_eval_run(
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    pipeline_state: PipelineStateStore,
    retriever: RetrieverResource,
    vector_store: VectorStoreResource,
    gateway: LLMGatewayResource,
    embedder: EmbedderResource,
    answer_service: AnswerServiceResource,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    golden = read_golden(pipeline_state)
    if not golden:
        raise dg.Failure("no golden set: materialize eval_questions first")
    items = golden[: config.limit] if config.limit > 0 else golden
    generation, pending, serving = _target(pipeline_state, vector_store)
    context.log.info(
        f"evaluating generation {generation} ({'candidate' if pending else 'serving'}) on {len(items)} questions"
    )
    scope = ReadScope.of(config.groups, config.principal)
    baseline = bool(pending and serving)
    retrieval = Progress("retrieval", total=len(items) * (2 if baseline else 1), unit="questions")
    log_retrieval = _logger(context, retrieval)
    rows = _retrieval_rows(
        retriever, items, generation, config.k, scope, on_row=lambda: log_retrieval(retrieval.advance())
    )
    t_retrieval = time.perf_counter() - t0
    baseline_rows = (
        _retrieval_rows(retriever, items, serving, config.k, scope, on_row=lambda: log_retrieval(retrieval.advance()))
        if baseline
        else None
    )
    n_answers = len(items) if config.answers < 0 else min(config.answers, len(items))
    answering = Progress("answering", total=n_answers, unit="questions")
    t1 = time.perf_counter()
    answered = _answers(
        context, answer_service, retriever, gateway, items[:n_answers], config, generation, scope, answering
    )
    t_answers = time.perf_counter() - t1
    t2 = time.perf_counter()
    judging = _judge(context, gateway, answered, config) if answered and config.judge else None
    t_judge = time.perf_counter() - t2

    results = _result_rows(items, rows, answered, generation)
    summary = {
        **_retrieval_summary(rows),
        **summarize(answered, [*TEXT_METRICS, *JUDGE_METRICS]),
        "answered": len(answered),
        "questions": len(items),
    }
    baseline_summary = _retrieval_summary(baseline_rows) if baseline_rows is not None else None
    run = {
        "generation": generation,
        "serving_generation": serving or "",
        "is_candidate": bool(pending),
        "summary": summary,
        "baseline_retrieval": baseline_summary,
        "golden_version": items[0]["version"],
        "run_id": context.run_id,
        "config": config.model_dump(),
        "models": {
            "embedder": embedder.model_id,
            "chat": gateway.chat_model,
            "judge": gateway.judge_backend or f"{gateway.judge_model} (deployed LLM)",
        },
        "seconds": {
            "retrieval": round(t_retrieval, 1),
            "answers": round(t_answers, 1),
            "judge": round(t_judge, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
    }
    pipeline_state.write(RESULTS_TABLE, pa.Table.from_pylist(results))
    pipeline_state.write_json(LAST_RUN_RECORD, run)
    progress = {
        **retrieval.metadata("retrieval_"),
        **(answering.metadata("answering_") if n_answers else {}),
        **(judging.metadata("judging_") if judging is not None else {}),
    }
    return dg.MaterializeResult(metadata=_run_metadata(run, results, progress, t0))


def _target(pipeline_state: PipelineStateStore, vector_store: VectorStoreResource) -> tuple[str, str | None, str]:
    """(the generation to evaluate, the pending candidate's or None, the serving one): a pending candidate is
    evaluated before it may be promoted; else the serving generation."""
    serving = vector_store.serving_generation()
    candidate = read_candidate(pipeline_state)
    pending = (
        candidate.generation if is_pending(candidate) and vector_store.has_generation(candidate.generation) else None
    )
    generation = pending or serving
    if not generation:
        raise dg.Failure("no index generation to evaluate")
    return generation, pending, serving


def _answers(
    context, answer_service, retriever, gateway, items, config, generation: str, scope, answering: Progress
) -> list[dict]:
    """Each item answered by the agent's fast path over ``generation``, with the contexts it was given."""
    if not items:
        return []
    if not gateway.alive():
        raise dg.Failure(
            f"the LLM gateway at {gateway.url} is not answering: start the services (`agentic up`), or evaluate "
            "retrieval only with answers=0 (`agentic eval --answers 0`)"
        )
    from agents.web_search import NoWebSearch

    # the candidate generation, answered from the index alone: a web result would not measure it
    agent = answer_service.build(
        retriever,
        gateway,
        config=answer_service.config(k=config.k, web_search="off", generation=generation),
        web_search=NoWebSearch(),
    )
    answered: list[dict] = []
    try:
        log_answer = _logger(context, answering)
        for it in items:
            a0 = time.perf_counter()
            plan = agent.plan(it["question"], scope=scope)
            contexts = [s.text for s in plan.sources if s.origin == "knowledge_base"]
            ans = agent.complete(plan)
            answered.append(
                {
                    "id": it["id"],
                    "question": it["question"],
                    "reference": it["reference"],
                    "response": ans.answer,
                    "contexts": contexts,
                    "route": ans.route,
                    "answer_seconds": round(time.perf_counter() - a0, 2),
                    "rouge_l": rouge_l(ans.answer, it["reference"]),
                }
            )
            log_answer(answering.advance())
    finally:
        agent.close()
    return answered


def _judge(context, gateway, answered: list[dict], config) -> Progress:
    """The RAGAS judge's scores (or recorded failures) added to each answered item."""
    from resources.judge import JudgeSettings, RagasJudge

    judge = RagasJudge(gateway, JudgeSettings(timeout_s=config.judge_timeout_s, attempts=config.judge_attempts))
    judging = Progress("judging", total=len(answered), unit="questions")
    log_judged = _logger(context, judging)
    scores = judge.score_all(answered, progress=lambda d, n: log_judged(judging.update(d)))
    for a, s in zip(answered, scores):
        a.update(s)
    return judging


def _result_rows(items: list[dict], rows: list[dict], answered: list[dict], generation: str) -> list[dict]:
    by_id = {a["id"]: a for a in answered}
    results = []
    for it, r in zip(items, rows):
        a = by_id.get(it["id"], {})
        results.append(
            {
                **r,
                "question": it["question"],
                "generation": generation,
                "response": a.get("response", ""),
                "contexts": json.dumps(a.get("contexts", [])),
                "route": a.get("route", ""),
                "rouge_l": a.get("rouge_l"),
                "answer_seconds": a.get("answer_seconds"),
                **{m: a.get(m) for m in JUDGE_METRICS},
                **{f"{m}_error": a.get(f"{m}_error", "") for m in JUDGE_METRICS},
            }
        )
    return results


def _run_metadata(run: dict, results: list[dict], progress: dict, t0: float) -> dict:
    summary = run["summary"]
    failures = {m: summary.get(f"{m}_failures", 0) for m in JUDGE_METRICS if summary.get(f"{m}_failures")}
    meta = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not k.endswith(("_n", "_failures"))}
    return {
        **{k: dg.MetadataValue.float(float(v)) if isinstance(v, float) else v for k, v in meta.items()},
        "generation": run["generation"],
        "evaluated": "candidate" if run["is_candidate"] else "serving",
        "golden_version": run["golden_version"],
        "judge_failures": dg.MetadataValue.json(failures),
        "seconds": dg.MetadataValue.json(run["seconds"]),
        # totals, wall time and rate of each part: retrieval_questions_per_second, answering_..., judging_...
        **progress,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "baseline_retrieval": dg.MetadataValue.json(run["baseline_retrieval"] or {}),
        "results": md_table(
            [dict(r, **{m: r.get(m) for m in JUDGE_METRICS}) for r in results if r["response"]] or results,
            ["question", "hybrid_hit_at_k", "dense_hit_at_k", "rouge_l", *JUDGE_METRICS],
        ),
    }


FLOORS = {"hybrid_hit_at_k": 0.8, "dense_hit_at_k": 0.7, "faithfulness": 0.5, "context_recall": 0.5}


@dg.asset_check(
    asset=rag_eval_run,
    description="Absolute quality floors (a warning, not a gate): hybrid hit@k >= 0.8, dense hit@k >= 0.7, "
    "and where judged, faithfulness >= 0.5 and context recall >= 0.5.",
)
def eval_quality_floors(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    summary = (read_last_run(pipeline_state) or {}).get("summary", {})
    below = {m: summary[m] for m, floor in FLOORS.items() if summary.get(m) is not None and summary[m] < floor}
    return dg.AssetCheckResult(
        passed=not below,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"below_floor": dg.MetadataValue.json(below), "floors": dg.MetadataValue.json(FLOORS)},
    )
