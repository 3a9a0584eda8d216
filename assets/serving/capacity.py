"""Serving capacity: a load test of the live stack with a tool of the field (AIPerf), the agent's own prompts, and the
highest load that meets the latency SLO, per model and hardware. Not in ``serving_job`` (``agentic up`` and the suite
run that): ``capacity_job`` runs it, and ``benchmarks/bench_capacity.py`` calls the same code."""

import base64
import json
import os
import time
from pathlib import Path

import dagster as dg

from agents.prompts import answer_messages
from agents.resource import AnswerServiceResource
from assets.serving.gateway import model_gateway
from assets.serving.models import model_deployments
from assets.serving.state import asset, read_record, write_capacity
from core import answering, capacity
from core.access import FULL_SCOPE
from core.evaluation import eval_split
from resources.gateway import LLMGatewayResource
from resources.load_test import LoadTestError, LoadTestResource
from resources.retrieval import RetrieverResource
from resources.state_store import PipelineStateStore

# the hand-written evaluation sets (docs/evaluation-sets.md): their questions and two-turn conversations, dev split
EVAL_DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "answerability"
TARGETS = ("model_server", "gateway", "api")


class CapacityConfig(dg.Config):
    targets: list[str] = ["model_server", "gateway", "api"]  # which of TARGETS get the load
    concurrency: list[int] = [1, 2, 4]  # closed-loop levels: requests in flight
    poisson_rates: list[float] = [0.02, 0.05]  # open-loop levels: mean requests/s, Poisson arrivals
    requests_per_level: int = 8
    max_requests: int = 200  # bound on the whole sweep, every target together
    level_time_limit_s: float = 600  # a level still running then is stopped (and the higher ones of its mode skipped)
    request_timeout_s: float = 300
    max_tokens: int = 128  # bound on each reply (model server, gateway); the API decides its own
    ttft_p95_ms: float = 15000  # SLO: p95 time to first token
    e2e_p95_ms: float = 40000  # SLO: p95 end-to-end latency
    questions: int = 12  # covered yes/no questions (dev split), one request each
    conversations: int = 6  # two-turn conversations (dev split), two requests each
    hardware: str = ""  # the label of the machine the capacity holds for; "" = this machine's CPU and cores


def eval_items(questions: int, conversations: int, data: Path = EVAL_DATA) -> tuple[list[dict], list[dict]]:
    """The first ``questions`` covered questions and ``conversations`` conversations of the dev split."""

    def read(name: str) -> list[dict]:
        lines = (data / name).read_text().splitlines()
        return [r for r in (json.loads(line) for line in lines if line.strip()) if eval_split(r["pmid"]) == "dev"]

    return read("covered.jsonl")[:questions], read("conversations.jsonl")[:conversations]


def agent_prompts(service, covered: list[dict], conversations: list[dict], max_tokens: int) -> dict[str, list[dict]]:
    """The prompt mix as the agent builds it: for each question the passages it retrieves (conclusions first, an open
    question's top document whole) in its answer prompt (``agents.prompts.answer_messages``: its system text and
    task, the numbered sources, the question); a conversation's follow-up as the second turn. ``engine``: for the
    model server and the gateway; ``api``: the same questions and follow-ups as a user sends them (the API retrieves
    and prompts itself). Covered questions and conversations alternate, so every level gets both."""

    def prompt(question: str) -> list[dict]:
        yes_no = answering.is_yes_no(question)
        sources, _ = service.retrieve(question, whole=0 if yes_no else 1, scope=FULL_SCOPE)
        return answer_messages(question, sources, yes_no, service.config.max_quotes)

    engine, api = [], []
    items = [(q["id"], q["question"], []) for q in covered]
    convs = [(c["id"], c["turn1"], [c["turn2"]]) for c in conversations]
    mixed = [x for pair in zip(items, convs) for x in pair] + items[len(convs) :] + convs[len(items) :]
    for sid, question, follow_ups in mixed:
        engine.append(capacity.conversation_record(sid, prompt(question), follow_ups, max_tokens))
        api.append(capacity.conversation_record(sid, [{"role": "user", "content": question}], follow_ups, None))
    return {"engine": engine, "api": api}


def stack_targets(
    names: list[str], deployments: dict, gateway: LLMGatewayResource, load_test: LoadTestResource
) -> list[capacity.Target]:
    """The live stack's targets: the model server (the Serve app relaying llama-server, or vLLM), the gateway with
    its key, the API with the admin key; the engine sampled is the model server in every case."""
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise dg.Failure(f"unknown capacity targets {unknown}; choose from {list(TARGETS)}")
    engine = deployments["endpoints"]["llm"].removesuffix("/").removesuffix("/v1")
    out = {
        "model_server": capacity.Target("model_server", engine, deployments["llm"], engine),
        "gateway": capacity.Target("gateway", gateway.url, gateway.chat_model, engine, keyed=True),
        "api": capacity.Target(
            "api", load_test.api_url, "agentic-rag", engine, keyed=True, server_token_count=False, agent_side=True
        ),
    }
    if "api" in names and not load_test.api_url:
        raise dg.Failure("the api target needs the load_test resource's api_url (the API `agentic up` starts)")
    return [out[n] for n in TARGETS if n in names]


def measure(
    load_test: LoadTestResource,
    targets: list[capacity.Target],
    prompts: dict[str, list[dict]],
    levels: list[capacity.Level],
    tokenizer: Path,
    keys: dict[str, str],
    slo: capacity.Slo,
    config: CapacityConfig,
    log=print,
) -> tuple[list[dict], dict]:
    """The sweep's rows and the capacity per (target, mode)."""
    rows = load_test.sweep(
        targets,
        levels,
        lambda t: prompts["api" if t.agent_side else "engine"],
        tokenizer,
        keys,
        config.request_timeout_s,
        config.level_time_limit_s,
        log,
    )
    return rows, capacity.capacity(rows, slo)


def hardware(label: str = "") -> str:
    if label:
        return label
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return capacity.hardware_label(cpuinfo, os.cpu_count() or 1)


def capacity_markdown(found: dict) -> str:
    lines = [
        "| target | mode | highest level meeting the SLO | requests/s there | first miss |",
        "|---|---|---|---|---|",
    ]
    for c in found.values():
        level = "none" if c["max_level"] is None else capacity.Level(c["mode"], c["max_level"], 1).name
        miss = "-" if c["first_miss"] is None else capacity.Level(c["mode"], c["first_miss"], 1).name
        rps = "-" if c["requests_per_s"] is None else f"{c['requests_per_s']:.3f}"
        lines.append(f"| {c['target']} | {c['mode']} | {level} | {rps} | {miss} |")
    return "\n".join(lines)


@asset(
    kinds={"python", "aiperf"},
    deps=[model_deployments, model_gateway],
    description="Serving capacity: AIPerf load on the live stack (model server, gateway, API; loopback, bounded in "
    "requests and time) with the agent's own prompts (its system text, retrieved passages, two-turn conversations), "
    "a concurrency sweep and Poisson arrival rates; TTFT, inter-token and end-to-end latency (p50/p95/p99), tokens/s, "
    "requests/s, the engine's queue depth and KV-cache use; the highest load meeting the p95 TTFT and end-to-end "
    "SLO, recorded per model and hardware.",
)
def serving_capacity(
    context: dg.AssetExecutionContext,
    config: CapacityConfig,
    load_test: LoadTestResource,
    gateway: LLMGatewayResource,
    retriever: RetrieverResource,
    answer_service: AnswerServiceResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    deployments = read_record(pipeline_state, "model_deployments")
    artifacts = read_record(pipeline_state, "model_artifacts")
    slo = capacity.Slo(config.ttft_p95_ms, config.e2e_p95_ms)
    try:
        levels = capacity.sweep_plan(
            config.concurrency, config.poisson_rates, config.requests_per_level, config.max_requests
        )
        per_target = sum(level.requests for level in levels)
        if per_target * len(config.targets) > config.max_requests:
            raise ValueError(
                f"{len(config.targets)} targets x {per_target} requests is over the bound of {config.max_requests}"
            )
        targets = stack_targets(config.targets, deployments, gateway, load_test)
        load_test.check()
        tokenizer = load_test.tokenizer(artifacts["llm"]["path"])
    except (ValueError, LoadTestError) as exc:
        raise dg.Failure(str(exc)) from exc
    service = answer_service.build(retriever, gateway, pipeline_state, config=answer_service.config(web_search="off"))
    try:
        covered, conversations = eval_items(config.questions, config.conversations)
        prompts = agent_prompts(service, covered, conversations, config.max_tokens)
    finally:
        service.close()
    keys = {"gateway": gateway.master_key, "api": load_test.api_key}
    t1 = time.perf_counter()
    try:
        rows, found = measure(load_test, targets, prompts, levels, tokenizer, keys, slo, config, context.log.info)
    except LoadTestError as exc:
        raise dg.Failure(str(exc)) from exc
    llm, machine = deployments["llm"], hardware(config.hardware)
    record = {
        "model": llm,
        "hardware": machine,
        "slo": slo.as_dict(),
        "tool": f"aiperf {load_test.version()}",
        "prompts": {"conversations": len(prompts["engine"]), "questions": len(covered), "two_turn": len(conversations)},
        "capacity": found,
        "rows": [{**r, "model": llm, "hardware": machine} for r in rows],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    png = capacity.curves_png(rows, slo, f"{llm} on {machine}")
    key = write_capacity(pipeline_state, capacity.record_name(llm, machine), record, png)
    sent = sum(r["completed"] + r["errors"] for r in rows)
    return dg.MaterializeResult(
        metadata={
            "model": llm,
            "hardware": machine,
            "slo": dg.MetadataValue.json(slo.as_dict()),
            "capacity": dg.MetadataValue.md(capacity_markdown(found)),
            "levels": len(rows),
            "requests_sent": sent,
            "requests_failed": sum(r["errors"] for r in rows),
            "requests_unfinished": sum(r.get("unfinished", 0) for r in rows),  # cut at a level's time limit
            "prompt_seconds": round(t1 - t0, 1),
            "load_seconds": round(time.perf_counter() - t1, 1),
            "record": key,
            "curves": dg.MetadataValue.md(f"![capacity](data:image/png;base64,{base64.b64encode(png).decode()})"),
        }
    )
