"""Answers on the hand-written evaluation sets: answerability, verdicts against hand labels, follow-ups, latency.

    python benchmarks/bench_answers.py --split test [--llm 1.5b] [--docs 2000] [--items 0] [--bare-every 3]
    python benchmarks/bench_answers.py --split dev --features     # then: python benchmarks/fit_answerability.py
    python benchmarks/bench_answers.py --split test --verdicts    # the verdict classifier alone, every covered item

Builds a home with the ``--docs`` sample that ``agentic run`` indexes (plus any article an evaluation item is about),
deploys the serving assets (Ray Serve + LiteLLM) with the chosen LLM and web search off, then on the split's items
(``benchmarks/eval_sets.py``; rules, prompts and weights are fit on dev, test is read only here):

- covered questions: the fast path's answer; refused or not; the model's own verdict (its word before any
  calibration or check), the calibrated verdict (``core.verdict``), what the answer's checks changed and the final
  verdict, each against the hand label; opposite answers; the source cited;
- uncovered questions: whether the answer made claims cited to the knowledge base;
- the answerability score's AUROC, covered vs uncovered;
- conversations: the follow-up's answer cites the first turn's article and contains an expected detail;
- every ``--bare-every``-th covered item: one bare chat call with the same sources and question (free text), the
  latency baseline, compared per item.

``--features`` writes only the judge's per-source features (``answerability_features_dev_<llm>.json``) for the fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import eval_sets  # noqa: E402
from benchmarks.common import bench_settings, materialize, percentile, save  # noqa: E402  (sets Ray env defaults)
from core.access import FULL_SCOPE  # noqa: E402

OPPOSITE = {"supports": {"refutes"}, "refutes": {"supports"}, "insufficient": {"supports"}}


def wilson(hits: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a proportion."""
    if not n:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def rate(rows: list[dict], key: str) -> dict:
    hits = sum(bool(r[key]) for r in rows)
    return {"rate": round(hits / len(rows), 3) if rows else None, "n": len(rows), "ci95": wilson(hits, len(rows))}


def features(service, items: list[dict], covered: bool) -> list[dict]:
    """The judge's per-source features of each question (no answer is written)."""
    from core.answering import is_yes_no

    out = []
    for item in items:
        yes_no = is_yes_no(item["question"])
        sources, _ = service.retrieve(item["question"], whole=0 if yes_no else 1, scope=FULL_SCOPE)
        _, feats = service.judge(item["question"], sources, yes_no, {"prompt": 0, "completion": 0}, [])
        out.append(
            {
                "id": item["id"],
                "covered": int(covered),
                "gold_id": f"PMID:{item['pmid']}" if covered else None,
                "sources": [
                    {"id": s.id, "title": s.title[:120], **{k: round(v, 4) for k, v in dataclasses.asdict(f).items()}}
                    for s, f in zip(sources, feats)
                ],
            }
        )
        print(f"features {len(out)}/{len(items)} {item['id']}", flush=True)
    return out


def ask(service, question: str, history: list | None = None):
    t0 = time.perf_counter()
    plan = service.plan(question, history=history, scope=FULL_SCOPE)
    answer = service.complete(plan)
    return plan, answer, time.perf_counter() - t0


def bare_call(client, model: str, plan, temperature: float) -> dict:
    """One plain chat call of the same model on the same question and sources: the latency baseline (seconds, its
    tokens, and the prompt tokens the engine served from its cache). It runs right after the system's own calls on
    the same sources, so it asks the engine not to use its prompt cache (llama-server's ``cache_prompt``): the
    baseline pays its own prefill, as a user's first call would."""
    from agents.prompts import ANSWER_TASK, SYSTEM, user_prompt

    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_prompt(plan.standalone, plan.sources, ANSWER_TASK)},
    ]
    t = time.perf_counter()
    r = client.chat.completions.create(
        model=model, messages=messages, max_tokens=200, temperature=temperature, extra_body={"cache_prompt": False}
    )
    seconds = time.perf_counter() - t
    details = getattr(r.usage, "prompt_tokens_details", None)
    return {
        "bare_s": round(seconds, 2),
        "bare_tokens": {"prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens},
        "bare_cached_tokens": getattr(details, "cached_tokens", None),
    }


def covered_row(item: dict, plan, answer, secs: float) -> dict:
    label, final = item["label"], answer.verdict
    model = answer.verdict_steps.get("model")
    calibrated = answer.verdict_steps.get("calibrated", model)
    return {
        "id": item["id"],
        "label": label,
        "model_verdict": model,
        "calibrated_verdict": calibrated,
        # the source whose conclusion the verdict was read from (0: none read)
        "verdict_source": (answer.verdict_steps.get("decision") or {}).get("source", 0),
        "covered_sources": (answer.answerability or {}).get("covered", []),
        "answer_call_verdict": answer.verdict_steps.get("answer_call"),
        "checks": answer.verdict_steps.get("checks", []),
        "verdict": final,
        "refused": answer.route != "knowledge_base",
        "agrees_model": model == label,
        "agrees_calibrated": calibrated == label,
        "agrees": final == label,
        "opposite_model": model in OPPOSITE[label],
        "opposite_calibrated": calibrated in OPPOSITE[label],
        "opposite": final in OPPOSITE[label],
        "gold_cited": f"PMID:{item['pmid']}" in {c["id"] for c in answer.citations},
        "score": answer.relevance,
        "route": answer.route,
        "llm_calls": answer.llm_calls,
        "seconds": round(secs, 2),
        "timings_ms": answer.timings_ms,  # where an answer's time goes: rewrite, retrieve, judge, generate
        "tokens": answer.tokens,
        "answer": answer.answer,
    }


def run(service, client, model: str, covered: list, uncovered: list, convs: list, bare_every: int = 3) -> dict:
    """Every item through the real answer service; the rows and the summary."""
    rows, unc_rows, conv_rows, bare = [], [], [], []
    for n, item in enumerate(covered, start=1):
        plan, answer, secs = ask(service, item["question"])
        rows.append(covered_row(item, plan, answer, secs))
        if bare_every and n % bare_every == 0 and plan.sources:
            b = bare_call(client, model, plan, service.config.temperature)
            bare.append({"id": item["id"], "answer_s": round(secs, 2), **b, "answer_tokens": answer.tokens})
        r = rows[-1]
        print(
            f"covered {n}/{len(covered)} {secs:5.1f}s {r['label']:>12} -> {r['verdict']:<14} {r['route']}", flush=True
        )
    for n, item in enumerate(uncovered, start=1):
        plan, answer, secs = ask(service, item["question"])
        unc_rows.append(
            {
                "id": item["id"],
                "kind": item["kind"],
                "kb_claims": answer.route == "knowledge_base" and bool(answer.citations),
                "route": answer.route,
                "score": answer.relevance,
                "seconds": round(secs, 2),
                "answer": answer.answer,
            }
        )
        print(f"uncovered {n}/{len(uncovered)} {secs:5.1f}s {answer.route}", flush=True)
    for item in convs:
        _, first, _ = ask(service, item["turn1"])
        # as a client of /query's conversations (or one that sends the citations back) gives it
        history = [
            {"role": "user", "content": item["turn1"]},
            {"role": "assistant", "content": first.answer, "citations": first.citations},
        ]
        plan, answer, secs = ask(service, item["turn2"], history)
        text = answer.answer.lower()
        right_study = f"PMID:{item['pmid']}" in {c["id"] for c in answer.citations}
        conv_rows.append(
            {
                "id": item["id"],
                "standalone": plan.standalone,
                "right_study": right_study,
                "has_detail": any(e.lower() in text for e in item["expected"]),
                "content_from_right_study": right_study and any(e.lower() in text for e in item["expected"]),
                # asked again with the conversation's subject (None: not asked again; True: answered from that)
                "follow_up_retry": plan.follow_up_retry,
                "answer": answer.answer,
                "seconds": round(secs, 2),
            }
        )
        print(f"conversation {len(conv_rows)}/{len(convs)} {conv_rows[-1]['content_from_right_study']}", flush=True)
    return {"summary": summarize(rows, unc_rows, conv_rows, bare), "covered": rows, "uncovered": unc_rows,
            "conversations": conv_rows, "bare": bare}  # fmt: skip


def summarize(rows: list[dict], unc: list[dict], convs: list[dict], bare: list[dict]) -> dict:
    from core.relevance import auroc

    answered = [r for r in rows if not r["refused"]]
    return {
        "covered": len(rows),
        "uncovered": len(unc),
        "uncovered_answered_with_kb_claims": rate(unc, "kb_claims"),
        "uncovered_near_miss_with_kb_claims": rate([u for u in unc if u["kind"] == "near_miss"], "kb_claims"),
        "covered_refused": rate(rows, "refused"),
        "answerability_auroc": round(auroc([r["score"] or 0 for r in rows], [u["score"] or 0 for u in unc]), 3)
        if rows and unc
        else None,
        "verdict_agreement_model": rate(rows, "agrees_model"),
        "verdict_agreement_calibrated": rate(rows, "agrees_calibrated"),
        "verdict_agreement_system": rate(rows, "agrees"),
        "opposite_model": rate(rows, "opposite_model"),
        "opposite_calibrated": rate(rows, "opposite_calibrated"),
        "opposite_system": rate(rows, "opposite"),
        "verdict_agreement_system_when_answered": rate(answered, "agrees"),
        "checks_changed_verdict": sum(1 for r in rows if r["model_verdict"] != r["verdict"]),
        "negatives": sum(1 for r in rows if r["label"] != "supports"),
        "gold_cited_when_answered": rate(answered, "gold_cited"),
        "follow_up_content_from_right_study": rate(convs, "content_from_right_study"),
        "follow_up_right_study": rate(convs, "right_study"),
        # without the retry, a follow-up answered from it would have been refused (its first judgement: not covered)
        "follow_up_content_from_right_study_without_retry": rate(
            [{"x": c["content_from_right_study"] and c.get("follow_up_retry") is not True} for c in convs], "x"
        ),
        "follow_up_retries": sum(c.get("follow_up_retry") is not None for c in convs),
        "answer_p50_s": round(statistics.median(r["seconds"] for r in rows), 2) if rows else None,
        "answer_p90_s": round(percentile([r["seconds"] for r in rows], 90), 2) if rows else None,
        "latency_ratio_paired_median": round(statistics.median(b["answer_s"] / b["bare_s"] for b in bare), 3)
        if bare
        else None,
        "latency_pairs": len(bare),
        "llm_calls_per_answer": round(statistics.mean(r["llm_calls"] for r in rows), 2) if rows else None,
        "load_avg_at_end": os.getloadavg(),
    }


def verdicts_only(llm: str, split: str) -> dict:
    """The verdict classifier alone (``core.verdict``, its committed fit) on every covered question of ``split``, over
    what it reads of the question's own abstract: no retrieval, no answer. The model's word and the calibrated
    verdict against the hand labels, with opposite answers."""
    from benchmarks.fit_verdict import classify
    from core import verdict

    t0 = time.perf_counter()
    model, rows = classify(llm, split)
    fit = verdict.load_fit(model)
    summary = score_verdicts(rows, fit)
    summary.update(llm=model, split=split, fit=fit.fitted_on, version=fit.version, seconds=time.perf_counter() - t0)
    return {"summary": summary, "rows": rows}


def score_verdicts(rows: list[dict], fit) -> dict:
    """Each row ({label, p}) gets the model's word and the calibrated verdict, each against its label; the rates."""
    from core import verdict

    for r in rows:
        d = verdict.decide(r["p"], fit)
        r.update(model_verdict=d.said, calibrated_verdict=d.verdict, p_supports=round(d.p_supports, 4))
        r.update(agrees_model=d.said == r["label"], agrees_calibrated=d.verdict == r["label"])
        r.update(opposite_model=d.said in OPPOSITE[r["label"]], opposite_calibrated=d.verdict in OPPOSITE[r["label"]])
    return {k: rate(rows, k) for k in ("agrees_model", "agrees_calibrated", "opposite_model", "opposite_calibrated")}


def build_home(args, settings) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from core.corpus import ARTICLE_TABLE, document_bytes, document_key, load_sample
    from pipelines.profiles import build_resources

    res = build_resources(settings)
    seeded = set()
    for pmid, data in load_sample(settings.pubmed_dir / ARTICLE_TABLE, args.docs):
        res["document_store"].put(document_key(pmid), data)
        seeded.add(pmid)
    missing = [p for p in eval_sets.articles() if p not in seeded]
    table = pq.read_table(settings.pubmed_dir / ARTICLE_TABLE)
    for row in table.filter(pc.is_in(table.column("pmid"), value_set=pa.array(missing, pa.string()))).to_pylist():
        res["document_store"].put(document_key(row["pmid"]), document_bytes(row["xml"]))
    del table
    materialize(res)
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=eval_sets.SPLITS, required=True)
    ap.add_argument("--llm", default="1.5b")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--items", type=int, default=0, help="at most this many covered and uncovered items (0 = all)")
    ap.add_argument("--conversations", type=int, default=0, help="at most this many conversations (0 = all)")
    ap.add_argument("--conversations-only", action="store_true", help="only the two-turn conversations")
    ap.add_argument("--bare-every", type=int, default=3)
    ap.add_argument(
        "--speculative", default="none", choices=("ngram", "none"), help="llama-server's speculative decoding"
    )
    ap.add_argument("--home", default="", help="reuse this home (its index is updated incrementally)")
    ap.add_argument("--features", action="store_true", help="only the judge's features, for the fit (dev only)")
    ap.add_argument("--verdicts", action="store_true", help="only the verdict classifier on the covered questions")
    ap.add_argument("--k", type=int, default=0, help="sources per question (0 = the agent's default)")
    ap.add_argument("--fit", default="", help="an answerability fits file to use instead of the committed one")
    args = ap.parse_args()
    if args.verdicts:
        out = verdicts_only(args.llm, args.split)
        print(out["summary"])
        save(f"verdicts_{args.llm}_{args.split}", {**out, "method": verdicts_only.__doc__.split("\n\n")[0]})
        return 0
    if args.features and args.split != "dev":
        ap.error("--features is for fitting, on dev only")

    import dagster as dg

    from agents.web_search import NoWebSearch
    from assets.serving import serving_assets, serving_checks
    from core.answerability import Fit, load_fit
    from core.gguf import get_model
    from infra.local.processes import free_port
    from pipelines.services import resolve_env

    os.environ.setdefault("AGENTIC_GATEWAY_KEY", secrets.token_urlsafe(24))
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-answers-"))
    home.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(
        bench_settings(home), llm=args.llm, serve_port=free_port(), gateway_port=free_port(), web_search="off",
        llm_speculative="" if args.speculative == "none" else args.speculative,
    )  # fmt: skip
    res = build_home(args, settings)
    result = dg.materialize([*serving_assets, *serving_checks], resources=res, instance=dg.DagsterInstance.ephemeral())
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    gateway = resolve_env(res["gateway"])
    # the features are what the fit is made from, so they are collected before any fit: a neutral one routes nothing
    fit = Fit([0.0, 1.0, 0.0, 0.0, 0.0], 0.5, 0.25) if args.features else None
    if args.fit and not args.features:
        fit = load_fit(get_model(args.llm).served_name, Path(args.fit))  # the name the service's lineage gives
    config = res["answer_service"].config(**({"k": args.k} if args.k else {}))
    service = res["answer_service"].build(
        res["retriever"], gateway, res["pipeline_state"], config=config, web_search=NoWebSearch(), fit=fit
    )
    service.answer("Does metformin lower HbA1c in type 2 diabetes?", scope=FULL_SCOPE)  # warm-up
    take = (lambda xs: xs[: args.items]) if args.items else (lambda xs: xs)
    covered, uncovered = take(eval_sets.covered(args.split)), take(eval_sets.uncovered(args.split))
    if args.conversations_only:
        covered, uncovered = [], []
    try:
        if args.features:
            rows = features(service, covered, True) + features(service, uncovered, False)
            model = service.lineage()["llm"]
            name = f"answerability_features_{args.split}_{args.llm}" + (f"_k{args.k}" if args.k else "")
            save(name, {"model": model, "split": args.split, "k": service.config.k, "rows": rows})
            return 0
        out = run(
            service,
            gateway.openai_client(),
            gateway.chat_model,
            covered,
            uncovered,
            eval_sets.conversations(args.split)[: args.conversations or None],
            args.bare_every,
        )
    finally:
        service.close()
        gateway.stop()
    out["summary"].update(
        llm=args.llm, split=args.split, documents_indexed=args.docs, fit=service.fit.fitted_on, items_cap=args.items,
        k=service.config.k,
        speculative=args.speculative,
    )  # fmt: skip
    print(out["summary"])
    name = f"answers_{args.llm}_{args.split}" + ("_conversations" if args.conversations_only else "")
    save(name, {**out, "method": __doc__.strip().splitlines()[0]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
