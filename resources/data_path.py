"""The knowledge pipeline's data path as Ray work: parse -> chunk -> embed, shard by shard, store to store.

Each stage is a Ray job entrypoint (``target`` of ``RayJobRunner.run``): its payload names the state store, the
dirty shards and the objects they read; Ray workers read their input from the store and write their output to the
store; the job returns only the new shard entries and counts, so the Dagster step that submitted it handles
metadata only. A shard whose output object for the same input already exists (an earlier attempt that was killed
after writing it) is not computed again: a retry resumes where the last attempt stopped.

Embedding runs as Ray Data ``map_batches`` over an autoscaling actor pool (each actor loads the model once and
embeds whole shards). A row that cannot be embedded, or whose vector is not finite and non-zero, goes to the
``chunk_quarantine`` table with its reason; the rest of its shard is indexed.
"""

from __future__ import annotations

import functools
import importlib
import json
import time
from typing import Any

import pyarrow as pa

from core.knowledge import (
    CHUNK_QUARANTINE,
    CHUNKS,
    DOCUMENTS,
    INVENTORY,
    QUARANTINE,
    chunk_shard,
    invalid_vectors,
    parse_shard,
    vectors_schema,
    vectors_to_reuse,
)
from resources.ray_jobs import report_progress
from resources.state_store import PipelineStateStore, state_store_from_spec


def resource_spec(resource: Any) -> dict[str, Any]:
    """A flat resource (a store) as class path + field values, to reopen it in a Ray worker. Never used for
    resources that hold secrets: credentials stay in the environment."""
    cls = type(resource)
    return {"cls": f"{cls.__module__}:{cls.__name__}", "fields": resource.model_dump()}


def open_resource(spec: dict[str, Any]) -> Any:
    module, name = spec["cls"].split(":")
    return getattr(importlib.import_module(module), name)(**spec["fields"])


def _load(payload: dict) -> dict:
    """The stage's payload: the work list the step wrote to the store (``payload_key``), or the payload itself."""
    if "payload_key" not in payload:
        return payload
    stored = state_store_from_spec(payload["store"]).read_json(payload["payload_key"])
    if stored is None:
        raise FileNotFoundError(f"stage payload {payload['payload_key']} is not in the state store")
    return {
        **stored,
        "store": payload["store"],
        **({"_runtime_env": payload["_runtime_env"]} if "_runtime_env" in payload else {}),
    }


def _remote_options(payload: dict) -> dict:
    env = (payload.get("_runtime_env") or {}).get("env_vars")
    return {"runtime_env": {"env_vars": env}} if env else {}


def _done(store: PipelineStateStore, outputs: tuple[str, ...], item: dict) -> dict | None:
    """Entries of an earlier attempt that already wrote every output of this shard for this input."""
    found = {name: store.find_shard(name, item["shard"], item["input"]) for name in outputs}
    return found if all(found.values()) else None


def _collect(results: list[dict]) -> dict:
    entries: dict[str, dict[int, dict]] = {}
    resumed: list[int] = []
    for r in results:
        if r.get("resumed"):
            resumed.append(int(r["shard"]))
        for name, entry in r["entries"].items():
            entries.setdefault(name, {})[int(r["shard"])] = entry
    return {
        "entries": {n: {str(s): e for s, e in es.items()} for n, es in entries.items()},
        "shards": len(results),
        "resumed": len(resumed),
        "resumed_shards": sorted(resumed),
    }


# ------------------------------------------------------------------ parse


@functools.lru_cache(maxsize=8)
def _opened(kind: str, spec_json: str) -> Any:
    """One store (and one S3 client) per Ray worker and spec, not one per shard."""
    spec = json.loads(spec_json)
    return state_store_from_spec(spec) if kind == "state" else open_resource(spec)


def _store(spec: dict) -> PipelineStateStore:
    return _opened("state", json.dumps(spec, sort_keys=True))


def _groups(items: list[dict], per_cpu: int = 4) -> list[list[dict]]:
    """The shards in about ``per_cpu`` tasks per Ray CPU: a task per tiny shard costs more in scheduling and store
    set-up than it computes; a task still holds one shard at a time, and a retry skips the shards it already wrote."""
    import ray

    tasks = max(1, per_cpu * int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, -(-len(items) // tasks))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _each(fn, items: list[dict], *args, **kwargs) -> list[dict]:
    return [fn(item, *args, **kwargs) for item in items]


def _report(results: list[dict], table: str, *stats: str) -> None:
    """Progress of finished shards: ``done`` shards, ``items`` (and any further ``stats``) counted in ``table``'s
    entries; a resumed shard counts as done, its work not (an earlier attempt did it)."""
    counts = {"done": len(results)}
    for name in stats:
        counts[name] = sum(
            int((r["entries"].get(table) or {}).get("stats", {}).get(name, 0)) for r in results if not r.get("resumed")
        )
    report_progress(items=counts.pop(stats[0], 0) if stats else 0, **counts)


def _gather(refs: list, table: str, *stats: str) -> list[dict]:
    """The shard results of ``_each`` tasks, reporting progress as each task finishes rather than at the end."""
    import ray

    results: list[dict] = []
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for rs in ray.get(ready):
            results.extend(rs)
            _report(rs, table, *stats)
    return results


def _parse_one(
    item: dict,
    store_spec: dict,
    docs_spec: dict,
    max_bytes: int,
    ocr_spec: dict | None = None,
    vision_spec: dict | None = None,
) -> dict:
    store = _store(store_spec)
    done = _done(store, ("documents", "parse_quarantine"), item)
    if done:
        return {"shard": item["shard"], "entries": done, "resumed": True}
    documents = _opened("resource", json.dumps(docs_spec, sort_keys=True))
    inventory = store.read_shard("inventory", item["shard"], INVENTORY, entry=item["reads"]["inventory"])
    prev_docs = store.read_shard("documents", item["shard"], DOCUMENTS, entry=item["prev"].get("documents") or {})
    prev_q = store.read_shard(
        "parse_quarantine", item["shard"], QUARANTINE, entry=item["prev"].get("parse_quarantine") or {}
    )
    ocr = _opened("resource", json.dumps(ocr_spec, sort_keys=True)).options() if ocr_spec else None
    if ocr is not None and vision_spec:
        from resources.vision import vision_from_worker_spec

        ocr.vision = vision_from_worker_spec(vision_spec)
    docs, quarantine, stats = parse_shard(inventory, prev_docs, prev_q, documents.get, max_bytes, ocr)
    return {
        "shard": item["shard"],
        "entries": {
            "documents": store.write_shard("documents", item["shard"], item["input"], docs, stats),
            "parse_quarantine": store.write_shard(
                "parse_quarantine", item["shard"], item["input"], quarantine, {"rows": quarantine.num_rows}
            ),
        },
    }


def parse_stage(payload: dict) -> dict:
    """Ray job: parse the dirty shards (one Ray task per shard)."""
    import ray

    payload = _load(payload)
    task = ray.remote(num_cpus=1, max_retries=2)(_each).options(**_remote_options(payload))
    refs = [
        task.remote(
            _parse_one,
            group,
            payload["store"],
            payload["documents"],
            max_bytes=payload["max_bytes"],
            ocr_spec=payload.get("ocr"),
            vision_spec=payload.get("vision"),
        )
        for group in _groups(payload["items"])
    ]
    return _collect(_gather(refs, "documents", "parsed", "ocr_pages"))


# ------------------------------------------------------------------ chunk


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, max_tokens: int):
    """One tokenizer per Ray worker process, not one per shard."""
    from core.embedding import load_tokenizer

    return load_tokenizer(path, max_tokens)


def _chunk_one(
    item: dict, store_spec: dict, tokenizer_path: str, max_tokens: int, chunk_tokens: int, overlap: int
) -> dict:
    from core.chunking import Chunker
    from core.embedding import count_tokens

    store = _store(store_spec)
    done = _done(store, ("chunks",), item)
    if done:
        return {"shard": item["shard"], "entries": done, "resumed": True}
    tokenizer = _tokenizer(tokenizer_path, max_tokens)
    chunker = Chunker(lambda texts: count_tokens(tokenizer, texts), max_tokens=chunk_tokens, overlap_tokens=overlap)
    docs = store.read_shard("documents", item["shard"], DOCUMENTS, entry=item["reads"]["documents"])
    prev = store.read_shard("chunks", item["shard"], CHUNKS, entry=item["prev"].get("chunks") or {})
    chunks, stats = chunk_shard(docs, prev, chunker)
    return {
        "shard": item["shard"],
        "entries": {"chunks": store.write_shard("chunks", item["shard"], item["input"], chunks, stats)},
    }


def chunk_stage(payload: dict) -> dict:
    """Ray job: chunk the dirty shards (one Ray task per shard)."""
    import ray

    payload = _load(payload)
    task = ray.remote(num_cpus=1, max_retries=2)(_each).options(**_remote_options(payload))
    c = payload["chunker"]
    refs = [
        task.remote(
            _chunk_one,
            group,
            payload["store"],
            tokenizer_path=c["tokenizer_path"],
            max_tokens=c["max_tokens"],
            chunk_tokens=c["chunk_tokens"],
            overlap=c["overlap"],
        )
        for group in _groups(payload["items"])
    ]
    return _collect(_gather(refs, "chunks", "chunks"))


# ------------------------------------------------------------------ embed


class EmbedShards:
    """Ray Data actor: holds the embedding model, embeds whole shards (only their chunks without a vector)."""

    def __init__(self, store_spec: dict, embedder_spec: dict, vectors_table: str, quarantine_table: str):
        from core.embedding import build_embedder

        self.store = state_store_from_spec(store_spec)
        self.embedder = build_embedder(embedder_spec)  # OnnxEmbedder, or HashedEmbedder when spec["kind"] == "hashed"
        self.dimension = embedder_spec["dimension"]
        self.vectors_table, self.quarantine_table = vectors_table, quarantine_table

    def _embed(self, texts: list[str]) -> tuple[Any, list[str | None]]:
        """Vectors and, per row, why it failed (None = fine). A batch that fails is retried row by row, so one
        poison chunk fails alone."""
        import numpy as np

        try:
            vectors = self.embedder.embed(texts)
            return vectors, invalid_vectors(vectors, self.dimension)
        except Exception:
            out = np.zeros((len(texts), self.dimension), np.float32)
            reasons: list[str | None] = []
            for i, t in enumerate(texts):
                try:
                    out[i] = self.embedder.embed([t])[0]
                    reasons.append(invalid_vectors(out[i : i + 1], self.dimension)[0])
                except Exception as exc:
                    reasons.append(f"embedding failed: {type(exc).__name__}: {exc}")
            return out, reasons

    def many(self, items: list[dict]) -> list[dict]:
        """Embed several shards in one length-sorted pass (a shard of a small corpus holds ~100 chunks; sorting over
        more texts pads less), then write each shard's vectors and quarantine."""
        import numpy as np

        schema = vectors_schema(self.dimension)
        results, prepared = [], []
        for item in items:
            done = _done(self.store, (self.vectors_table, self.quarantine_table), item)
            if done:
                results.append({"shard": item["shard"], "entries": done, "resumed": True})
                continue
            chunks = self.store.read_shard(
                "chunks", item["shard"], CHUNKS, entry=item["reads"]["chunks"], columns=["chunk_id", "doc_key", "text"]
            )
            prev = self.store.read_shard(
                self.vectors_table, item["shard"], schema, entry=item["prev"].get(self.vectors_table) or {}
            )
            kept, todo = vectors_to_reuse(chunks, prev)
            prepared.append((item, kept, todo, prev.num_rows))
        texts = [t for _, _, todo, _ in prepared for t in todo.column("text").to_pylist()]
        t0 = time.perf_counter()
        vectors, reasons = self._embed(texts) if texts else (np.zeros((0, self.dimension), np.float32), [])
        per_row = (time.perf_counter() - t0) / max(1, len(texts))
        offset = 0
        for item, kept, todo, prev_rows in prepared:
            n = todo.num_rows
            results.append(
                self._write(
                    item, kept, todo, vectors[offset : offset + n], reasons[offset : offset + n], prev_rows, n * per_row
                )
            )
            offset += n
        return results

    def _write(self, item, kept, todo, vectors, reasons, prev_rows: int, seconds: float) -> dict:
        import numpy as np

        schema = vectors_schema(self.dimension)
        quarantine: list[dict] = []
        new = schema.empty_table()
        if todo.num_rows:
            ok = np.array([r is None for r in reasons], bool)
            for i in np.flatnonzero(~ok):
                quarantine.append(
                    {
                        "chunk_id": todo.column("chunk_id")[i].as_py(),
                        "doc_key": todo.column("doc_key")[i].as_py(),
                        "reason": reasons[i],
                        "at": time.time(),
                    }
                )
            good = todo.filter(pa.array(ok))
            flat = pa.array(np.ascontiguousarray(vectors[ok]).reshape(-1), type=pa.float32())
            new = pa.table(
                {
                    "chunk_id": good.column("chunk_id"),
                    "doc_key": good.column("doc_key"),
                    "vector": pa.FixedSizeListArray.from_arrays(flat, self.dimension),
                },
                schema=schema,
            )
        table = pa.concat_tables([kept.cast(schema), new]) if kept.num_rows else new
        stats = {
            "embedded": todo.num_rows - len(quarantine),
            "reused": kept.num_rows,
            "quarantined": len(quarantine),
            "removed": prev_rows - kept.num_rows,
            "seconds": round(seconds, 3),
        }
        qtable = pa.Table.from_pylist(quarantine, schema=CHUNK_QUARANTINE)
        return {
            "shard": item["shard"],
            "entries": {
                self.vectors_table: self.store.write_shard(
                    self.vectors_table, item["shard"], item["input"], table, stats
                ),
                self.quarantine_table: self.store.write_shard(
                    self.quarantine_table, item["shard"], item["input"], qtable, {"rows": len(quarantine)}
                ),
            },
        }

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        results = self.many([json.loads(x) for x in batch["item"]])
        return {"result": np.array([json.dumps(r) for r in results], dtype=object)}


# Actors loaded up front: a small pool starts whole (scaling up from one costs a model load mid-run, ~10% of a
# 2,000-document run on 2 cores); a large one starts with this many and grows while its queue stays full.
MIN_WARM_ACTORS = 2
CALL_CHUNKS = 2048  # chunks an actor embeds in one call (several small shards together; one large shard alone)
CALLS_PER_ACTOR = 2  # at least: a run killed mid-embedding keeps the shards of the calls that finished


def shards_per_call(rows: list[int], actors: int) -> int:
    """How many shards one embedding call takes: about ``CALL_CHUNKS`` chunks, and at least ``CALLS_PER_ACTOR`` calls
    per actor, so a small incremental run is not one call that a kill loses whole."""
    per_shard = max(1, sum(rows) // max(1, len(rows)))
    return max(1, min(CALL_CHUNKS // per_shard, -(-len(rows) // (actors * CALLS_PER_ACTOR))))


def embed_stage(payload: dict) -> dict:
    """Ray job: embed the dirty shards on an autoscaling actor pool (1..``actors`` actors of ``threads_per_actor``
    CPUs each)."""
    import ray

    payload = _load(payload)
    items = payload["items"]
    if not items:
        return _collect([])
    cpus = int(ray.cluster_resources().get("CPU", 1))
    # Two ONNX threads per actor by default: the same cores embed ~10% faster as fewer, wider actors (one model
    # load, length-sorting over more texts, no idle actor at the end), measured on 2 and 16 cores alike.
    threads = max(1, min(int(payload.get("threads_per_actor") or 1), cpus))
    actors = max(1, min(payload.get("actors") or cpus // threads, len(items)))
    spec = {**payload["embedder"], "threads": threads}
    per_call = shards_per_call([int((it["reads"].get("chunks") or {}).get("rows", 0)) for it in items], actors)
    ds = ray.data.from_items([{"item": json.dumps(it)} for it in items], override_num_blocks=len(items))
    ds = ds.map_batches(
        EmbedShards,
        fn_constructor_kwargs={
            "store_spec": payload["store"],
            "embedder_spec": spec,
            "vectors_table": payload["vectors_table"],
            "quarantine_table": payload["quarantine_table"],
        },
        batch_size=per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(
            min_size=min(actors, MIN_WARM_ACTORS), max_size=actors, max_tasks_in_flight_per_actor=1
        ),
        num_cpus=threads,
        **_remote_options(payload),
    )
    results = []
    for row in ds.iter_rows():  # streamed: progress as each call's shards are written, not once at the end
        results.append(json.loads(row["result"]))
        _report(results[-1:], payload["vectors_table"], "embedded", "quarantined")
    out = _collect(results)
    out["actors"] = actors
    return out
