"""Sentence embeddings with ONNX Runtime: tokenizer -> transformer -> mean pooling -> L2 norm.

This is the runtime the local profile uses (all-MiniLM-L6-v2, int8 ONNX). It is plain
Python so a Ray Data actor, a Ray Serve replica and a benchmark can all build one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class EmbedderError(RuntimeError):
    pass


def load_tokenizer(tokenizer_path: str | Path, max_tokens: int):
    from tokenizers import Tokenizer

    path = Path(tokenizer_path)
    if not path.is_file():
        raise EmbedderError(f"tokenizer.json not found at {path}; run `make setup` to fetch model files")
    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_tokens)
    tok.no_padding()
    return tok


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Word pieces per text, without special tokens and without truncation."""
    if not texts:
        return []
    enc = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    # truncation is enabled on the tokenizer; the overflowing pieces tell the true length
    return [len(e.ids) + sum(len(o.ids) for o in e.overflowing) for e in enc]


class OnnxEmbedder:
    def __init__(
        self,
        model_path: str | Path,
        tokenizer_path: str | Path,
        *,
        dimension: int = 384,
        max_tokens: int = 256,
        batch_size: int = 32,
        threads: int = 0,
        query_prefix: str = "",
        document_prefix: str = "",
    ):
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise EmbedderError(f"ONNX model not found at {model_path}; run `make setup` to fetch model files")
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.tokenizer = load_tokenizer(tokenizer_path, max_tokens)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self.session.get_inputs()}
        out_dim = self.session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int) and out_dim != dimension:
            raise EmbedderError(f"model outputs {out_dim}-d vectors, configured dimension is {dimension}")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_tokens(self.tokenizer, texts)

    def _run(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed(self, texts: Sequence[str], prefix: str | None = None) -> np.ndarray:
        """Embed texts in length-sorted batches (less padding); output keeps the input order."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prefix = self.document_prefix if prefix is None else prefix
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise EmbedderError("refusing to embed an empty text")
        encodings = self.tokenizer.encode_batch([prefix + t for t in texts])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._run([encodings[i] for i in idx])
        return out

    def embed_query(self, query: str) -> np.ndarray:
        return self.embed([query], prefix=self.query_prefix)[0]


def vectors_to_numpy(column, dimension: int) -> np.ndarray:
    """An Arrow fixed-size-list column (chunked or not) -> (n, dimension) float32 array."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if len(arr) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), dimension)


class HashedEmbedder:
    """A stand-in embedder for scale benchmarks, *not* a language model: signed feature hashing of the embedding
    model's word-piece ids (unigrams and adjacent pairs) into ``dimension`` buckets, L2-normalized.

    Deterministic, same tokenizer and truncation as ``OnnxEmbedder``, same interface (``embed``, ``embed_query``,
    ``count_tokens``), but it costs a tokenization, not a transformer pass, and its vectors carry lexical overlap,
    not meaning. Selected with ``EmbedderResource(kind="hashed")`` (spec ``{"kind": "hashed", ...}``); timings of
    an embedding step that uses it are not the real model's.
    """

    kind = "hashed"

    def __init__(
        self,
        tokenizer_path: str | Path,
        *,
        dimension: int = 384,
        max_tokens: int = 256,
        batch_size: int = 32,
        threads: int = 0,
        query_prefix: str = "",
        document_prefix: str = "",
        model_path: str | Path = "",  # accepted (an EmbedderResource spec carries it), not used
        seed: int = 0,
    ):
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.seed = np.uint64(seed)
        self.tokenizer = load_tokenizer(tokenizer_path, max_tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_tokens(self.tokenizer, texts)

    def _buckets(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bucket, sign) of uint64 feature keys: a multiplicative hash (splitmix64 finalizer)."""
        with np.errstate(over="ignore"):
            h = keys ^ self.seed
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
        bucket = (h % np.uint64(self.dimension)).astype(np.int64)
        sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
        return bucket, sign

    def embed(self, texts: Sequence[str], prefix: str | None = None) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prefix = self.document_prefix if prefix is None else prefix
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise EmbedderError("refusing to embed an empty text")
        encodings = self.tokenizer.encode_batch([prefix + t for t in texts], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.uint64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        same = rows[1:] == rows[:-1]  # adjacent pieces of the same text
        with np.errstate(over="ignore"):
            pairs = (ids[:-1][same] * np.uint64(0x9E3779B97F4A7C15)) ^ (ids[1:][same] + np.uint64(1 << 40))
        b1, s1 = self._buckets(ids)
        b2, s2 = self._buckets(pairs)
        flat = np.concatenate([rows * self.dimension + b1, rows[1:][same] * self.dimension + b2])
        weights = np.concatenate([s1, s2])
        out = np.bincount(flat, weights=weights, minlength=len(texts) * self.dimension).reshape(
            len(texts), self.dimension
        )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embed([query], prefix=self.query_prefix)[0]


EMBEDDER_KINDS = ("onnx", "hashed")


def build_embedder(spec: dict):
    """The runtime a spec names: ``kind`` "onnx" (default: the real model) or "hashed" (``HashedEmbedder``)."""
    spec = dict(spec)
    kind = spec.pop("kind", "onnx")
    if kind == "hashed":
        return HashedEmbedder(**spec)
    if kind == "onnx":
        return OnnxEmbedder(**spec)
    raise EmbedderError(f"embedder kind must be one of {EMBEDDER_KINDS}, got {kind!r}")
