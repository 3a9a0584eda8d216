"""The one place that reads the process environment.

Everything else receives a :class:`Settings` (or resources built from it by
``pipelines.profiles``), so there is no scattered ``os.getenv`` in assets or resources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("local", "eks")
VECTOR_STORES = ("lancedb", "opensearch")


@dataclass(frozen=True)
class Settings:
    profile: str
    home: Path  # all local state: document store, index, pipeline state, Dagster home
    cache: Path  # downloads shared across checkouts: wheels, corpus, model files
    corpus_limit: int
    ray_address: str | None
    vector_store: str = "lancedb"  # local profile: lancedb (default) or a local OpenSearch node
    opensearch_port: int = 9200

    @property
    def opensearch_url(self) -> str:
        return f"http://127.0.0.1:{self.opensearch_port}"

    @property
    def opensearch_data(self) -> Path:
        return self.home / "opensearch"

    @property
    def document_root(self) -> Path:
        return self.home / "documents"

    @property
    def state_root(self) -> Path:
        return self.home / "state"

    @property
    def index_root(self) -> Path:
        return self.home / "index"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def ray_root(self) -> Path:
        return self.home / "ray"

    @property
    def pubmed_dir(self) -> Path:
        return self.cache / "pubmed"

    @property
    def model_dir(self) -> Path:
        return self.cache / "models" / "all-MiniLM-L6-v2"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    profile = env.get("AGENTIC_PROFILE", "local").strip() or "local"
    if profile not in PROFILES:
        raise ValueError(f"AGENTIC_PROFILE must be one of {PROFILES}, got {profile!r}")
    home = Path(env.get("AGENTIC_HOME", ".agentic")).expanduser().resolve()
    cache = Path(env.get("AGENTIC_CACHE", str(Path.home() / ".cache" / "agentic"))).expanduser().resolve()
    raw_limit = env.get("AGENTIC_CORPUS_LIMIT", "2000").strip()
    try:
        limit = int(raw_limit)
    except ValueError as exc:
        raise ValueError(f"AGENTIC_CORPUS_LIMIT must be an integer (0 = all), got {raw_limit!r}") from exc
    if limit < 0:
        raise ValueError("AGENTIC_CORPUS_LIMIT must be >= 0 (0 = all)")
    store = env.get("AGENTIC_VECTOR_STORE", "lancedb").strip() or "lancedb"
    if store not in VECTOR_STORES:
        raise ValueError(f"AGENTIC_VECTOR_STORE must be one of {VECTOR_STORES}, got {store!r}")
    try:
        port = int(env.get("AGENTIC_OPENSEARCH_PORT", "9200"))
    except ValueError as exc:
        raise ValueError("AGENTIC_OPENSEARCH_PORT must be a port number") from exc
    return Settings(
        vector_store=store,
        opensearch_port=port,
        profile=profile,
        home=home,
        cache=cache,
        corpus_limit=limit,
        ray_address=env.get("AGENTIC_RAY_ADDRESS") or None,
    )
