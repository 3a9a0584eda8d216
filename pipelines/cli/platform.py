"""The platform commands: the platform job (render, plan, apply), the cost report, the local Kubernetes control plane
and the local OpenSearch node."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipelines.cli.common import run_job, say, summarize
from pipelines.settings import Settings


def cmd_platform(args, settings: Settings) -> int:
    """Runs ``platform_job`` and prints what it did. render: render and validate only, then copy the renders out of the
    state store into --out. plan / apply: against the target (AGENTIC_PLATFORM_TARGET or --target): ``cluster`` is a
    kubeconfig (default this home's `agentic cluster up`), ``eks`` is EKS and AWS (boto3's credential chain;
    AWS_ENDPOINT_URL for an emulator)."""
    from dataclasses import replace

    from assets.platform import platform_assets
    from pipelines.profiles import build_resources, deployment

    home_target = deployment(settings).apply_target  # local: this home's control plane (kwok nodes); eks: EKS
    target = "render" if args.action == "render" else (args.target or settings.platform_target)
    if args.action != "render" and target == "render":
        target = home_target
    changes = {"platform_target": target}
    if args.compute_mode:
        changes["compute_mode"] = args.compute_mode
    elif target == "cluster" == home_target and settings.platform_target != "cluster":
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
        say(f"platform_job run {result.run_id}: rendered and validated; artifacts copied into {out}")
        for line in summarize(result):
            say(line)
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
    say(
        f"platform_job run {result.run_id} ({'applied' if apply else 'planned'} on {target}, compute {settings.compute_mode})"
    )
    for asset, plan in plans.items():
        say(f"{asset}:")
        for a in plan:
            what = a.get("kind") or a.get("resource", "")
            where = (a.get("namespace", "") + "/") if a.get("namespace") else ""
            changes = a.get("changes") or []
            say(
                f"  {a['action']:<9} {what:<18} {where}{a['name']}"
                + (f"  changes: {', '.join(changes[:5])}" if changes else "")
            )
    return 0


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
        say(name)
        for x in ls:
            say(f"  {x['service']:<40} {x['dimension']:<42} {x['monthly_usd']:>10,.2f}")
        say(f"  {'total':<83} {total(ls):>10,.2f}")

    table(title, lines)
    if extra:
        table("What the reference leaves out (priced from this platform's bill of materials)", extra)
        say(f"  {'reference + omitted':<83} {total(lines) + total(extra):>10,.2f}")
    return 0


def cmd_cluster(args, settings: Settings) -> int:
    """up: start etcd, the API server, controller manager, scheduler, kwok, Karpenter (kwok) and KubeRay on 127.0.0.1
    under this home, built first into the user cache if they are not yet (once per version); down: stop them (--wipe:
    delete their data too); status: what runs."""
    from infra.local.kube.cluster import ClusterError, ensure_built
    from pipelines.services import local_cluster

    cluster = local_cluster(settings)
    try:
        if args.action == "up":
            ensure_built(settings.cache, log=say)
            info = cluster.up()
            say(f"control plane ready in {info['started_in_s']:.1f}s at {info['server']}")
            say(f"kubeconfig: {info['kubeconfig']}  (export KUBECONFIG={info['kubeconfig']})")
        elif args.action == "down":
            stopped = cluster.down(wipe=args.wipe)
            say(f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; data wiped" if args.wipe else ""))
        else:
            print(json.dumps(cluster.status(), indent=1))
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def ensure_opensearch(settings: Settings) -> str:
    """Start the local OpenSearch node (detached) unless one already answers; returns its URL. Builds the node first
    when it is not built yet (setup builds it only for `make opensearch` and `make test`)."""
    from infra.local.opensearch_node import OpenSearchNode, _healthy, ensure_built

    node = OpenSearchNode(settings.opensearch_data, settings.opensearch_port)
    if _healthy(node.url):
        return node.url
    ensure_built(log=say)
    say(f"starting OpenSearch with k-NN on {node.url} (data in {settings.opensearch_data}) ...")
    node.start()
    say(f"OpenSearch ready in {node.startup_seconds:.1f}s; stop it with `agentic opensearch stop`")
    return node.url


def cmd_opensearch(args, settings: Settings) -> int:
    from infra.local.opensearch_node import OpenSearchError, OpenSearchNode, _healthy, ensure_built

    node = OpenSearchNode(settings.opensearch_data, settings.opensearch_port)
    try:
        if args.action == "start":
            ensure_opensearch(settings)
        elif args.action == "stop":
            code = node.stop()
            say("stopped" if code is not None or not _healthy(node.url) else "no node to stop")
        elif args.action == "status":
            say(json.dumps({"url": node.url, "healthy": _healthy(node.url), "data": str(settings.opensearch_data)}))
        else:  # run: foreground until Ctrl+C (built first if it is not yet)
            ensure_built(log=say)
            node.start()
            say(f"OpenSearch with k-NN on {node.url} (ready in {node.startup_seconds:.1f}s); Ctrl+C stops it")
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
