"""Answer latency vs one bare LLM call with the same final prompt, and LLM calls per answer.

    python benchmarks/bench_answer.py [--llm 0.5b|1.5b] [--questions 10] [--docs 500]

Builds a home with ``--docs`` real abstracts (knowledge assets), deploys the serving assets (Ray
Serve + LiteLLM) and, per question, times (a) the fast path (retrieve -> grade -> answer) and
(b) one bare chat call through the same gateway with the exact final prompt of (a). The bare call
gets a one-line nonce in front of its system prompt so it cannot reuse llama.cpp's KV cache from
(a): it pays its whole prompt, as a bare call would. The orchestrator agent is timed on a few
questions too. Goal from the issue: answer / bare <= 1.2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from benchmarks.common import bench_settings, materialize, percentile, save  # noqa: E402  (sets Ray env defaults)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="0.5b")
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--agent-questions", type=int, default=3)
    ap.add_argument("--docs", type=int, default=500)
    args = ap.parse_args()

    from agents.service import AgentConfig, AnswerService, WebSearch
    from assets.serving import serving_assets, serving_checks
    from core.corpus import ARTICLE_TABLE, document_key, load_sample
    from pipelines.profiles import build_resources
    from pipelines.services import resolve_env
    from tests.helpers import free_port

    os.environ.setdefault("AGENTIC_GATEWAY_KEY", secrets.token_urlsafe(24))
    home = Path(tempfile.mkdtemp(prefix="bench-answer-"))
    settings = dataclasses.replace(
        bench_settings(home), llm=args.llm, serve_port=free_port(), gateway_port=free_port(), web_search="off"
    )
    res = build_resources(settings)
    sample = load_sample(settings.pubmed_dir / ARTICLE_TABLE, args.docs)
    for pmid, data in sample:
        res["document_store"].put(document_key(pmid), data)
    t = time.perf_counter()
    materialize(res)
    index_s = time.perf_counter() - t
    t = time.perf_counter()
    result = dg.materialize([*serving_assets, *serving_checks], resources=res, instance=dg.DagsterInstance.ephemeral())
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    deploy_s = time.perf_counter() - t
    gateway = resolve_env(res["gateway"])
    cfg = AgentConfig(web_search="off")
    service = AnswerService(res["retriever"], gateway, cfg, WebSearch("off"))
    client = gateway.openai_client()

    titles = [h.title for h in (res["retriever"].search("clinical outcomes of treatment", k=60, mode="bm25"))]
    seen, questions = set(), []
    for title in titles:
        if title and title not in seen:
            seen.add(title)
            questions.append(f'What did the study "{title.rstrip(".")}" find?')
    questions = questions[: args.questions]

    # warm-up: load the model's weights into the page cache, compile the grammar code paths
    service.answer("What is hypertension?")
    rows = []
    for q in questions:
        t0 = time.perf_counter()
        plan = service.plan(q)  # retrieve + grade (call 1)
        answer = service.complete(plan)  # the answer (call 2), exactly as AnswerService.answer does it
        answer_s = time.perf_counter() - t0
        bare_messages = [
            dict(plan.messages[0], content=f"[run {secrets.token_hex(4)}]\n" + plan.messages[0]["content"]),
            plan.messages[1],
        ]
        t1 = time.perf_counter()
        r = client.chat.completions.create(
            model=gateway.chat_model,
            messages=bare_messages,
            max_tokens=cfg.answer_max_tokens,
            temperature=cfg.temperature,
            frequency_penalty=cfg.frequency_penalty,
        )
        bare_s = time.perf_counter() - t1
        rows.append(
            {
                "question": q[:80],
                "answer_s": round(answer_s, 3),
                "bare_s": round(bare_s, 3),
                "ratio": round(answer_s / bare_s, 3),
                "llm_calls": answer.llm_calls,
                "route": answer.route,
                "answer_tokens": answer.tokens,
                "bare_tokens": {"prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens},
                "timings_ms": answer.timings_ms,
            }
        )
        print(
            f"{answer_s:6.2f}s vs bare {bare_s:6.2f}s  calls={answer.llm_calls} route={answer.route}  {q[:60]}",
            flush=True,
        )

    agent_rows = []
    for q in questions[: args.agent_questions]:
        t0 = time.perf_counter()
        a = service.answer(q, mode="agent")
        agent_rows.append(
            {
                "question": q[:80],
                "seconds": round(time.perf_counter() - t0, 3),
                "llm_calls": a.llm_calls,
                "route": a.route,
            }
        )
        print(f"agent {agent_rows[-1]['seconds']:6.2f}s calls={a.llm_calls} route={a.route}", flush=True)
    service.close()
    gateway.stop()

    ans = [r["answer_s"] for r in rows]
    bare = [r["bare_s"] for r in rows]
    summary = {
        "llm": args.llm,
        "documents": args.docs,
        "questions": len(rows),
        "answer_p50_s": round(statistics.median(ans), 3),
        "answer_p90_s": round(percentile(ans, 90), 3),
        "bare_call_p50_s": round(statistics.median(bare), 3),
        "ratio_of_medians": round(statistics.median(ans) / statistics.median(bare), 3),
        "ratio_of_sums": round(sum(ans) / sum(bare), 3),
        "goal_ratio_max": 1.2,
        "llm_calls_per_answer": round(statistics.mean(r["llm_calls"] for r in rows), 2),
        "agent_p50_s": round(statistics.median(r["seconds"] for r in agent_rows), 3) if agent_rows else None,
        "agent_llm_calls_per_answer": round(statistics.mean(r["llm_calls"] for r in agent_rows), 2)
        if agent_rows
        else None,
        "index_seconds": round(index_s, 1),
        "deploy_seconds": round(deploy_s, 1),
    }
    print(summary)
    save(
        f"answer_latency_{args.llm}",
        {"summary": summary, "rows": rows, "agent_rows": agent_rows, "method": __doc__.strip().splitlines()[0]},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
