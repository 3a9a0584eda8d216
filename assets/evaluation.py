"""Evaluation as assets: a versioned golden set, RAGAS runs, their history, and the gate that promotes an index.

eval_questions -> rag_eval_run -> eval_history --[index_promotion_gate, blocking]--> serving_index

- ``rag_eval_run`` evaluates the promotion *candidate* generation when one is pending (a rebuild, a new model or
  mapping), else the serving one. Retrieval metrics (ID-based precision/recall, hit@k, MRR; dense and hybrid) are
  computed for every question of the set and, for comparison, for the serving generation too. A sample of the
  questions (``answers``) also goes through the RAG agent: ROUGE-L against the reference, and the RAGAS judge.
- ``eval_history`` appends every run (generation, models, config, summary, gate verdict) and plots the trend.
- ``index_promotion_gate`` fails when the candidate is worse than the serving generation beyond a tolerance;
  being blocking, it stops ``serving_index`` and the old generation keeps serving.
"""


import base64
import io
import json
import time

import dagster as dg
import pyarrow as pa

from assets.knowledge import CHUNKS, DOCUMENTS, _md_table as _md, read_candidate, vector_index, write_candidate
from infra.platform.config import k8s_step
from core.evaluation import ID_METRICS, JUDGE_METRICS, TEXT_METRICS, build_golden_set, id_metrics, promotion_gate, rouge_l, summarize
from resources.embedder import EmbedderResource
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource
from resources.state_store import PipelineStateStore
from resources.vector_store import VectorStoreResource

GROUP = "evaluation"
OWNERS = ["team:ml-platform"]
RETRIEVAL_MODES = ("dense", "hybrid")

GOLDEN = pa.schema([("id", pa.string()), ("question", pa.string()), ("reference", pa.string()), ("gold_doc_keys", pa.list_(pa.string())),
                    ("retrieval_query", pa.string()), ("title", pa.string()), ("version", pa.string())])
HISTORY = pa.schema([("run_id", pa.string()), ("at", pa.float64()), ("golden_version", pa.string()), ("generation", pa.string()),
                     ("serving_generation", pa.string()), ("is_candidate", pa.bool_()), ("models", pa.string()), ("config", pa.string()),
                     ("summary", pa.string()), ("baseline", pa.string()), ("gate", pa.string())])


# ------------------------------------------------------------------ golden set


class GoldenSetConfig(dg.Config):
    size: int = 300  # questions in the set


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    deps=[vector_index],
    description="The golden set, built deterministically from the indexed corpus: abstracts with a CONCLUSIONS section; the "
    "title phrased as a question, the conclusions as the reference answer, the document as the gold source (and title -> "
    "document as a retrieval pair). Stable order by hash of the key; the version names the rules, the size and a digest.",
)
def eval_questions(context: dg.AssetExecutionContext, config: GoldenSetConfig, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    live = set(pipeline_state.read("chunks", CHUNKS).column("doc_key").to_pylist())
    docs = [d for d in pipeline_state.read("documents", DOCUMENTS).to_pylist() if d["key"] in live]
    items, version = build_golden_set(docs, size=config.size)
    if not items:
        raise dg.Failure("no indexed document has a conclusions section: the golden set would be empty")
    rows = [dict(i.as_row(), version=version) for i in items]
    previous = pipeline_state.read("eval_questions", GOLDEN)
    pipeline_state.write("eval_questions", pa.Table.from_pylist(rows, schema=GOLDEN))
    prev_version = previous.column("version")[0].as_py() if previous.num_rows else ""
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "changed": version != prev_version,
            "questions": len(items),
            "eligible_documents": len(docs),
            "preview": _md(rows, ["question", "reference", "gold_doc_keys"], limit=5),
        }
    )


# ------------------------------------------------------------------ evaluation run


class EvalConfig(dg.Config):
    limit: int = 0  # questions of the set to evaluate (0 = all); a sample for CI
    answers: int = 24  # of those, how many go through the agent + ROUGE + RAGAS judge (-1 = all, 0 = retrieval only)
    judge: bool = True  # RAGAS judge metrics for the answered questions
    k: int = 5  # contexts per question (the agent's k)
    judge_timeout_s: float = 240.0
    judge_attempts: int = 2


def _retrieval_rows(retriever: RetrieverResource, items: list[dict], generation: str, k: int) -> list[dict]:
    rows = []
    for it in items:
        row = {"id": it["id"]}
        for mode in RETRIEVAL_MODES:
            hits = retriever.search(it["question"], k=k, mode=mode, generation=generation)
            for name, v in id_metrics([h.doc_key for h in hits], it["gold_doc_keys"]).items():
                row[f"{mode}_{name}"] = v
        rows.append(row)
    return rows


def _retrieval_summary(rows: list[dict]) -> dict:
    return summarize(rows, [f"{m}_{n}" for m in RETRIEVAL_MODES for n in ID_METRICS])


@dg.asset(
    group_name=GROUP,
    op_tags=k8s_step("1", "4Gi", "6Gi"),
    kinds={"ragas", "python"},
    owners=OWNERS,
    deps=[eval_questions],
    description="Evaluates the candidate index generation (or the serving one when none is pending): ID-based context "
    "precision/recall, hit@k and MRR for dense and hybrid retrieval over the golden set; for a sample, the RAG agent's answers "
    "with ROUGE-L and RAGAS 0.4 faithfulness, response relevancy, context precision and context recall, judged by the "
    "gateway's judge model. Judge failures are retried, then recorded as failures, never as scores.",
)
def rag_eval_run(
    context: dg.AssetExecutionContext, config: EvalConfig, pipeline_state: PipelineStateStore, retriever: RetrieverResource,
    vector_store: VectorStoreResource, gateway: LLMGatewayResource, embedder: EmbedderResource,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    golden = pipeline_state.read("eval_questions", GOLDEN).to_pylist()
    if not golden:
        raise dg.Failure("no golden set: materialize eval_questions first")
    items = golden[: config.limit] if config.limit > 0 else golden
    serving = vector_store.serving_generation()
    candidate = read_candidate(pipeline_state)
    pending = candidate["generation"] if candidate and candidate["status"] == "pending" and vector_store.has_generation(candidate["generation"]) else None
    generation = pending or serving
    if not generation:
        raise dg.Failure("no index generation to evaluate")
    context.log.info(f"evaluating generation {generation} ({'candidate' if pending else 'serving'}) on {len(items)} questions")

    rows = _retrieval_rows(retriever, items, generation, config.k)
    t_retrieval = time.perf_counter() - t0
    baseline_rows = _retrieval_rows(retriever, items, serving, config.k) if pending and serving else None

    n_answers = len(items) if config.answers < 0 else min(config.answers, len(items))
    answered: list[dict] = []
    t1 = time.perf_counter()
    if n_answers and not gateway.alive():
        raise dg.Failure(f"the LLM gateway at {gateway.url} is not answering: start the services (`agentic up`), or evaluate "
                         "retrieval only with answers=0 (`agentic eval --answers 0`)")
    if n_answers:
        from agents.service import AgentConfig, AnswerService, WebSearch

        agent = AnswerService(retriever, gateway, AgentConfig(k=config.k, web_search="off", generation=generation), WebSearch("off"))
        try:
            for i, it in enumerate(items[:n_answers], start=1):
                a0 = time.perf_counter()
                plan = agent.plan(it["question"])
                contexts = [s.text for s in plan.sources if s.origin == "knowledge_base"]
                ans = agent.complete(plan)
                answered.append({"id": it["id"], "question": it["question"], "reference": it["reference"], "response": ans.answer,
                                 "contexts": contexts, "route": ans.route, "answer_seconds": round(time.perf_counter() - a0, 2),
                                 "rouge_l": rouge_l(ans.answer, it["reference"])})
                if i % 5 == 0 or i == n_answers:
                    context.log.info(f"answered {i}/{n_answers} questions")
        finally:
            agent.close()
    t_answers = time.perf_counter() - t1
    t2 = time.perf_counter()
    if answered and config.judge:
        from resources.judge import JudgeSettings, RagasJudge

        judge = RagasJudge(gateway, JudgeSettings(timeout_s=config.judge_timeout_s, attempts=config.judge_attempts))
        scores = judge.score_all(answered, progress=lambda d, n: context.log.info(f"judged {d}/{n} questions") if d % 5 == 0 or d == n else None)
        for a, s in zip(answered, scores):
            a.update(s)
    t_judge = time.perf_counter() - t2

    by_id = {a["id"]: a for a in answered}
    results = []
    for it, r in zip(items, rows):
        a = by_id.get(it["id"], {})
        results.append({**r, "question": it["question"], "generation": generation, "response": a.get("response", ""),
                        "contexts": json.dumps(a.get("contexts", [])), "route": a.get("route", ""), "rouge_l": a.get("rouge_l"),
                        "answer_seconds": a.get("answer_seconds"),
                        **{m: a.get(m) for m in JUDGE_METRICS}, **{f"{m}_error": a.get(f"{m}_error", "") for m in JUDGE_METRICS}})
    summary = {**_retrieval_summary(rows), **summarize(answered, [*TEXT_METRICS, *JUDGE_METRICS]), "answered": len(answered)}
    summary["questions"] = len(items)
    baseline = _retrieval_summary(baseline_rows) if baseline_rows is not None else None
    run = {"generation": generation, "serving_generation": serving or "", "is_candidate": bool(pending), "summary": summary,
           "baseline_retrieval": baseline, "golden_version": items[0]["version"], "run_id": context.run_id,
           "config": config.model_dump(), "models": {"embedder": embedder.model_id, "chat": gateway.chat_model,
                                                     "judge": gateway.judge_backend or f"{gateway.judge_model} (deployed LLM)"},
           "seconds": {"retrieval": round(t_retrieval, 1), "answers": round(t_answers, 1), "judge": round(t_judge, 1),
                       "total": round(time.perf_counter() - t0, 1)}}
    pipeline_state.write("eval_results", pa.Table.from_pylist(results))
    (_eval_dir(pipeline_state) / "last_run.json").write_text(json.dumps(run, indent=1))
    failures = {m: summary.get(f"{m}_failures", 0) for m in JUDGE_METRICS if summary.get(f"{m}_failures")}
    meta = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not k.endswith(("_n", "_failures"))}
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.float(float(v)) if isinstance(v, float) else v for k, v in meta.items()},
            "generation": generation,
            "evaluated": "candidate" if pending else "serving",
            "golden_version": run["golden_version"],
            "judge_failures": dg.MetadataValue.json(failures),
            "seconds": dg.MetadataValue.json(run["seconds"]),
            "baseline_retrieval": dg.MetadataValue.json(baseline or {}),
            "results": _md([dict(r, **{m: r.get(m) for m in JUDGE_METRICS}) for r in results if r["response"]] or results,
                           ["question", "hybrid_hit_at_k", "dense_hit_at_k", "rouge_l", *JUDGE_METRICS]),
        }
    )


def _eval_dir(pipeline_state: PipelineStateStore):
    from pathlib import Path

    d = Path(pipeline_state.root) / "evaluation"
    d.mkdir(parents=True, exist_ok=True)
    return d


FLOORS = {"hybrid_hit_at_k": 0.8, "dense_hit_at_k": 0.7, "faithfulness": 0.5, "context_recall": 0.5}


@dg.asset_check(asset=rag_eval_run, description="Absolute quality floors (a warning, not a gate): hybrid hit@k >= 0.8, dense hit@k >= 0.7, "
                "and where judged, faithfulness >= 0.5 and context recall >= 0.5.")
def eval_quality_floors(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    path = _eval_dir(pipeline_state) / "last_run.json"
    summary = json.loads(path.read_text())["summary"] if path.exists() else {}
    below = {m: summary[m] for m, floor in FLOORS.items() if summary.get(m) is not None and summary[m] < floor}
    return dg.AssetCheckResult(passed=not below, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"below_floor": dg.MetadataValue.json(below), "floors": dg.MetadataValue.json(FLOORS)})


# ------------------------------------------------------------------ history, gate, promotion

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
    prior = [h for h in history if h["generation"] == run["serving_generation"] and h["golden_version"] == run["golden_version"]]
    judged_baseline = json.loads(prior[-1]["summary"]) if prior else None
    judged_metrics = [m for m in JUDGE_METRICS if run["summary"].get(f"{m}_n") or run["summary"].get(f"{m}_failures")]
    judged = promotion_gate(run["summary"], judged_baseline, cfg.judge_tolerance, judged_metrics, cfg.max_judge_failure_rate)
    reasons = [f"retrieval: {r}" for r in retrieval.reasons]
    if judged_metrics:
        reasons += [f"judge: {r}" for r in judged.reasons]
    return {"passed": retrieval.passed and judged.passed, "reasons": reasons, "compared": {**retrieval.compared, **judged.compared}}


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    deps=[rag_eval_run],
    description="Every evaluation run appended with its index generation, models, config, summary and gate verdict; a trend "
    "plot (PNG) of the main metrics. A candidate that fails the gate is marked rejected here (kept for inspection).",
)
def eval_history(context: dg.AssetExecutionContext, config: GateConfig, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    run = json.loads((_eval_dir(pipeline_state) / "last_run.json").read_text())
    history = pipeline_state.read("eval_history", HISTORY).to_pylist()
    gate = decide(run, history, config)
    record = {"run_id": run["run_id"], "at": time.time(), "golden_version": run["golden_version"], "generation": run["generation"],
              "serving_generation": run["serving_generation"], "is_candidate": run["is_candidate"], "models": json.dumps(run["models"]),
              "config": json.dumps(run["config"]), "summary": json.dumps(run["summary"]),
              "baseline": json.dumps(run["baseline_retrieval"]), "gate": json.dumps(gate)}
    history = [h for h in history if h["run_id"] != record["run_id"]] + [record]
    pipeline_state.write("eval_history", pa.Table.from_pylist(history, schema=HISTORY))
    if run["is_candidate"] and not gate["passed"]:
        write_candidate(pipeline_state, run["generation"], "rejected", "; ".join(gate["reasons"]))
        context.log.warning(f"candidate {run['generation']} rejected: {gate['reasons']}")
    png = _trend_png(history)
    path = _eval_dir(pipeline_state) / "trend.png"
    path.write_bytes(png)
    rows = [{"at": time.strftime("%Y-%m-%d %H:%M", time.gmtime(h["at"])), "generation": h["generation"],
             "candidate": h["is_candidate"], "gate": "pass" if json.loads(h["gate"])["passed"] else "FAIL",
             **{k: json.loads(h["summary"]).get(k) for k in ("hybrid_id_context_recall", "dense_id_context_recall", "rouge_l", "faithfulness")}}
            for h in history[-10:]]
    return dg.MaterializeResult(
        metadata={
            "runs": len(history),
            "gate_passed": gate["passed"],
            "gate_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in gate["reasons"])),
            "trend": dg.MetadataValue.md(f"![trend](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "trend_png": dg.MetadataValue.path(str(path)),
            "recent": _md(rows, list(rows[0].keys()), limit=10),
        }
    )


@dg.asset_check(asset=eval_history, blocking=True, description="Promotion gate: the candidate generation is not worse than the serving "
                "one beyond the tolerance (retrieval measured side by side; judged metrics against the serving generation's last "
                "evaluation) and judge failures stay rare. Failing blocks serving_index: the old generation keeps serving.")
def index_promotion_gate(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    history = pipeline_state.read("eval_history", HISTORY).to_pylist()
    if not history:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no evaluation recorded"})
    last = history[-1]
    gate = json.loads(last["gate"])
    return dg.AssetCheckResult(
        passed=gate["passed"],
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(gate["reasons"]),
        metadata={"generation": last["generation"], "candidate": last["is_candidate"], "compared": dg.MetadataValue.json(gate["compared"])},
    )


@dg.asset(
    group_name=GROUP,
    kinds={"lancedb", "opensearch"},
    owners=OWNERS,
    deps=[eval_history],
    description="Switches the serving pointer to the candidate generation once the promotion gate passed (atomic); the previous "
    "generation is kept for rollback. Nothing to do when no candidate is pending.",
)
def serving_index(context: dg.AssetExecutionContext, pipeline_state: PipelineStateStore, vector_store: VectorStoreResource) -> dg.MaterializeResult:
    candidate = read_candidate(pipeline_state)
    before = vector_store.serving_generation()
    history = pipeline_state.read("eval_history", HISTORY).to_pylist()
    last = history[-1] if history else None
    if candidate and candidate["status"] == "pending":
        if not last or last["generation"] != candidate["generation"] or not json.loads(last["gate"])["passed"]:
            raise dg.Failure(f"candidate {candidate['generation']} has no passing evaluation; run rag_eval_run first")
        vector_store.promote(candidate["generation"])
        write_candidate(pipeline_state, candidate["generation"], "promoted", f"gate passed in run {last['run_id']}")
        context.log.info(f"serving generation switched {before} -> {candidate['generation']}")
    after = vector_store.serving_generation()
    return dg.MaterializeResult(metadata={"serving_generation": after or "", "previous": before or "", "promoted_this_run": after != before})


evaluation_assets = [eval_questions, rag_eval_run, eval_history, serving_index]
evaluation_checks = [eval_quality_floors, index_promotion_gate]
