"""The GGUF header reader behind the decode and prefill bounds (benchmarks/bench_physical_bound.py), on the test
model file setup assembles and on files it must refuse."""

from __future__ import annotations

import struct

import pytest

from core.gguf import get_model
from core.gguf_tensors import GGUFError, Tensor, read_tensors, token_cost


def test_the_test_models_tensor_table_adds_up_to_its_file(base_settings):
    path = base_settings.cache / "models" / "llm" / get_model("0.5b").file_name
    meta, tensors = read_tensors(path)
    cost = token_cost(tensors)
    assert meta["general.architecture"] == "qwen2" and meta["qwen2.block_count"] == len(
        {t.name.split(".")[1] for t in tensors if t.name.startswith("blk.")}
    )
    # the weights are nearly the whole file (the rest is metadata: the tokenizer's 151k strings)
    assert 0.97 < cost.weight_bytes / path.stat().st_size < 1.0
    # Qwen2.5-0.5B: 494M parameters, plus a separate output head in this file (151,936 x 896)
    assert cost.params == 494_032_768 + 151_936 * 896
    assert sum(cost.types.values()) == cost.params
    # decode skips the embedding table (one row per token); prefill skips the head (last token only) and the norms
    embd = next(t for t in tensors if t.name == "token_embd.weight")
    assert cost.decode_bytes == cost.weight_bytes - embd.nbytes
    assert cost.prefill_macs == sum(t.params for t in tensors if len(t.shape) == 2) - 2 * 151_936 * 896


def test_tied_embeddings_are_read_whole_as_the_head():
    tensors = [Tensor("token_embd.weight", (64, 1000), 8), Tensor("blk.0.ffn_up.weight", (64, 128), 8)]
    cost = token_cost(tensors)
    assert cost.decode_bytes == cost.weight_bytes and cost.prefill_macs == 64 * 128


def test_what_is_not_a_gguf_file_is_refused_by_name(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 32)
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_tensors(bad)
    bad.write_bytes(b"GGUF" + struct.pack("<I", 9) + b"\0" * 16)
    with pytest.raises(GGUFError, match="version 9"):
        read_tensors(bad)
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 0))
    with pytest.raises(GGUFError, match="ends early"):
        read_tensors(bad)
    with pytest.raises(GGUFError, match="type 99"):
        _ = Tensor("x", (32,), 99).nbytes
