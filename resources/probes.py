"""Endpoint probes: a real chat completion, real embeddings and a chat completion with an image, with bounded waits."""

from __future__ import annotations

import math
import time

import httpx


def _complete(base: str, model: str, content, headers: dict | None) -> httpx.Response:
    """One short, deterministic chat completion of one user message."""
    return httpx.post(
        f"{base}/chat/completions",
        headers=headers or {},
        timeout=300,
        json={"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0},
    )


def _reply(r: httpx.Response, t0: float) -> tuple[bool, dict]:
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        return False, {"status": r.status_code, "body": r.text[:300]}
    content = r.json()["choices"][0]["message"].get("content") or ""
    return bool(content.strip()), {"reply": content.strip()[:80], "latency_ms": round(ms)}


def _unreachable(base: str, exc: httpx.HTTPError) -> tuple[bool, dict]:
    """A check that cannot reach its endpoint fails, saying which and why (never passes with a 'skipped' note)."""
    return False, {"unreachable": base, "error": f"{type(exc).__name__}: {exc}"[:300]}


def chat_ok(base: str, model: str, headers: dict | None = None, loading_s: float = 120) -> tuple[bool, dict]:
    try:
        return _chat_ok(base, model, headers, loading_s)
    except httpx.HTTPError as exc:
        return _unreachable(base, exc)


def _chat_ok(base: str, model: str, headers: dict | None, loading_s: float) -> tuple[bool, dict]:
    t = time.perf_counter()
    while True:
        r = _complete(base, model, "Name one organ of the human body. One word.", headers)
        # llama-server answers 503 "Loading model" while it reads the weights: wait for it, bounded
        if r.status_code != 503 or "Loading model" not in r.text or time.perf_counter() - t > loading_s:
            break
        time.sleep(1.0)
    return _reply(r, t)


def embed_ok(base: str, model: str, dim: int, headers: dict | None = None) -> tuple[bool, dict]:
    try:
        r = httpx.post(
            f"{base}/embeddings",
            headers=headers or {},
            timeout=60,
            json={"model": model, "input": ["aspirin and heart attack", "insulin"]},
        )
    except httpx.HTTPError as exc:
        return _unreachable(base, exc)
    if r.status_code != 200:
        return False, {"status": r.status_code, "body": r.text[:300]}
    vecs = [d["embedding"] for d in r.json()["data"]]
    norms = [math.sqrt(sum(x * x for x in v)) for v in vecs]
    ok = len(vecs) == 2 and all(len(v) == dim for v in vecs) and all(abs(n - 1) < 1e-3 for n in norms)
    return ok, {"vectors": len(vecs), "dimension": len(vecs[0]) if vecs else 0, "norms": [round(n, 4) for n in norms]}


def vision_ok(base: str, model: str, headers: dict | None = None) -> tuple[bool, dict]:
    """A real chat completion with an image part (a red square, as a base64 PNG data URL): the route takes images."""
    from resources.vision import image_message, solid_png

    t = time.perf_counter()
    content = image_message(solid_png(32, 32, (220, 20, 20)), "Name its colour. One word.")
    try:
        return _reply(_complete(base, model, content, headers), t)
    except httpx.HTTPError as exc:
        return _unreachable(base, exc)
