"""The pipeline's Ray Data embedding vs a served embedding model called once per text over HTTP.

    python benchmarks/bench_embed_served.py [--docs 500] [--per-call-sample 300]

The reference design's "20x" compared batch embedding with one remote call per text. This measures
that in one run on this machine: the knowledge pipeline end to end (chunks/s) against the Ray Serve
embedding app (the one `model_deployments` runs) called one text per HTTP request, sequentially
(a naive client), and with 16 concurrent clients (where `@serve.batch` groups requests).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.knowledge.state import CHUNKS, CHUNKS_TABLE, read_table  # noqa: E402
from benchmarks.common import bench_settings, materialize, save  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--per-call-sample", type=int, default=300)
    args = ap.parse_args()

    import httpx
    from ray import serve

    from core.corpus import ARTICLE_TABLE, document_key, load_sample
    from infra.local.processes import free_port
    from pipelines.profiles import build_resources
    from resources.serve_apps import EmbeddingDeployment

    home = Path(tempfile.mkdtemp(prefix="bench-embed-served-"))
    settings = dataclasses.replace(bench_settings(home), serve_port=free_port())
    res = build_resources(settings)
    res["ray_cluster"].ensure()
    for pmid, data in load_sample(settings.pubmed_dir / ARTICLE_TABLE, args.docs):
        res["document_store"].put(document_key(pmid), data)
    wall, meta = materialize(res)
    texts = read_table(res["pipeline_state"], CHUNKS_TABLE, CHUNKS, columns=["text"]).column("text").to_pylist()
    pipeline_cps = len(texts) / wall

    serve.start(http_options={"host": "127.0.0.1", "port": settings.serve_port})
    embedder = res["embedder"]
    serve.run(
        EmbeddingDeployment.bind(embedder.spec(threads=0), embedder.model_id),
        name="embedder",
        route_prefix="/embed",
        blocking=False,
    )
    url = f"http://127.0.0.1:{settings.serve_port}/embed/v1/embeddings"
    client = httpx.Client(timeout=60)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if client.post(url, json={"input": "warm up"}).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sample = texts[: args.per_call_sample]
    t = time.perf_counter()
    for text in sample:
        r = client.post(url, json={"input": text})
        r.raise_for_status()
    sequential_cps = len(sample) / (time.perf_counter() - t)

    with ThreadPoolExecutor(16) as pool:
        t = time.perf_counter()
        list(pool.map(lambda s: httpx.post(url, json={"input": s}, timeout=60).raise_for_status(), sample))
        concurrent_cps = len(sample) / (time.perf_counter() - t)
    serve.shutdown()

    out = {
        "documents": args.docs,
        "chunks": len(texts),
        "pipeline_chunks_per_second": round(pipeline_cps, 1),
        "served_one_text_per_request_sequential_cps": round(sequential_cps, 1),
        "served_one_text_per_request_16_clients_cps": round(concurrent_cps, 1),
        "ratio_pipeline_vs_served_sequential": round(pipeline_cps / sequential_cps, 2),
        "ratio_pipeline_vs_served_16_clients": round(pipeline_cps / concurrent_cps, 2),
        "method": __doc__.strip().splitlines()[0],
    }
    print(out)
    save("embed_pipeline_vs_served", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
