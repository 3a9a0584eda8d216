"""The routed LLM app (resources/serve_routing.py) on the session's Ray Serve: two llama-server replicas of the 0.5B
model behind Ray Serve LLM's prefix-cache affinity router. A conversation's second turn goes to the replica that holds
its first, so that replica's own counter shows the prompt read from its cache; both replicas take conversations; the
replicas stop their servers when the app is deleted."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.integration

TOPICS = ["renal function in older adults", "sepsis in children", "statins after stroke", "asthma in athletes"]


def _processed(urls: list[str]) -> list[float]:
    from core.capacity import parse_prometheus

    return [parse_prometheus(httpx.get(f"{u}/metrics", timeout=10).text)["llamacpp:prompt_tokens_total"] for u in urls]


def test_prefix_affinity_keeps_each_conversation_on_the_replica_that_caches_it(serving_stack, tmp_path):
    from ray import serve

    from core.gguf import get_model
    from infra.local.llama_server import resolve_binary
    from resources.serve_routing import replica_urls, routed_app

    settings = serving_stack.settings
    model = get_model("0.5b")
    path = settings.cache / "models" / "llm" / model.file_name
    binary, env, _ = resolve_binary(settings.cache, probe_model=path, threads=1)
    run_dir = tmp_path / "replicas"
    spec = {"binary": str(binary), "env": env, "model_path": str(path), "alias": model.served_name,
            "ctx_size": 2048, "parallel": 1, "threads": 1, "run_dir": str(run_dir)}  # fmt: skip
    serve.run(routed_app(spec, "prefix", 2, imbalanced_threshold=2), name="routed", route_prefix="/routed")
    base = f"{serving_stack.serving.base_url}/routed"
    try:
        deadline = time.time() + 120
        while len(replica_urls(run_dir)) < 2 and time.time() < deadline:
            time.sleep(0.5)
        urls = replica_urls(run_dir)
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        took = [0, 0]
        for topic in TOPICS:
            system = {"role": "system", "content": f"Answer about {topic} from the notes. " + f"Note on {topic}. " * 40}
            first = [system, {"role": "user", "content": f"What is known about {topic}?"}]
            r = httpx.post(f"{base}/v1/chat/completions", json={"messages": first, "max_tokens": 4}, timeout=120)
            assert r.status_code == 200, r.text
            reply = r.json()["choices"][0]["message"]["content"]
            before = _processed(urls)
            follow = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "And in women?"}]
            r = httpx.post(f"{base}/v1/chat/completions", json={"messages": follow, "max_tokens": 4}, timeout=120)
            assert r.status_code == 200, r.text
            prompt = r.json()["usage"]["prompt_tokens"]
            delta = [a - b for a, b in zip(_processed(urls), before)]
            # one replica served the follow-up, and read all but its last turn from that replica's cache
            served = [i for i, d in enumerate(delta) if d > 0]
            assert len(served) == 1 and delta[served[0]] < 0.2 * prompt, (topic, delta, prompt)
            took[served[0]] += 1
        assert min(took) >= 1, took  # both replicas took conversations: affinity, not one replica for everything
    finally:
        serve.delete("routed")
    deadline = time.time() + 60
    while replica_urls(run_dir) and time.time() < deadline:
        time.sleep(0.5)
    assert not replica_urls(run_dir)  # each replica stopped its llama-server on the way out
