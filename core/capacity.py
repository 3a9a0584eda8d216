"""Serving capacity: the load sweep, what the load tool (AIPerf) and llama-server report, and the highest load that
meets a latency SLO. Pure logic; ``resources.load_test`` runs the tool and samples the server, the ``serving_capacity``
asset and ``benchmarks/bench_capacity.py`` call both.

A sweep is a list of load levels, each one AIPerf run bounded in requests and time: closed-loop concurrency levels
(N requests in flight) and open-loop Poisson arrival rates (requests per second). The prompts are the agent's own
(its system text, the passages retrieved for a question, two-turn conversations), written as AIPerf's ``multi_turn``
JSONL. Each run's export (``profile_export_aiperf.json``) gives one row: time to first token, inter-token latency,
end-to-end latency (p50/p95/p99), output tokens/s and requests/s; llama-server's ``/metrics`` (requests processing and
deferred) and ``/slots`` (the context its busy slots hold), sampled during the run, give queue depth and KV-cache use.
The capacity is the highest level, in order of load, whose p95 TTFT and p95 end-to-end latency meet the SLO with no
failed request, every lower level meeting it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

CONCURRENCY, POISSON = "concurrency", "poisson"


@dataclass(frozen=True)
class Level:
    """One load level: ``mode`` concurrency (``value`` requests in flight) or poisson (``value`` requests/s)."""

    mode: str
    value: float
    requests: int
    ramp_s: float = 0.0  # concurrency: the tool opens its slots one by one over this long (0: all at once)

    @property
    def name(self) -> str:
        return f"{'c' if self.mode == CONCURRENCY else 'r'}{self.value:g}"


def staggered(level: Level, service_ms: float | None) -> Level:
    """A concurrency level whose sessions start ``service_ms / c`` apart (``service_ms``: a lower level's median
    end-to-end latency), as a closed loop's sessions run once out of step. Started at once, c first turns are
    prefilled in one batch and all wait for the whole of it: at c2 the first pair's TTFT was 18.1 s where the rest
    took 6.8-8.8 s, and it made a 10-request level's p95 (capacity_check_0.5b_run8.json)."""
    if level.mode != CONCURRENCY or level.value <= 1 or not service_ms:
        return level
    return replace(level, ramp_s=round((level.value - 1) / level.value * service_ms / 1000, 1))


@dataclass(frozen=True)
class Slo:
    ttft_p95_ms: float
    e2e_p95_ms: float
    max_error_rate: float = 0.0  # share of failed requests a level may have

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """Where the load goes: the model server, the gateway or the API (``url`` without ``/v1``); ``engine_url`` is the
    llama-server (or the Serve app relaying it) whose ``/metrics`` and ``/slots`` are sampled; ``keyed``: the target
    wants a bearer key, passed to the tool by environment, never on its command line."""

    name: str
    url: str
    model: str
    engine_url: str
    keyed: bool = False
    server_token_count: bool = True  # the target reports usage (the API streams text only)
    agent_side: bool = False  # the API retrieves and builds prompts itself: it gets the questions only


def sweep_plan(
    concurrency: Iterable[int], rates: Iterable[float], requests_per_level: int, max_requests: int
) -> list[Level]:
    """Concurrency levels then Poisson rates, each in increasing order; refused when the sweep would send more than
    ``max_requests`` (the bound on the whole test), or a level fewer requests than it has in flight."""
    if requests_per_level < 1:
        raise ValueError("requests_per_level must be at least 1")
    levels = [Level(CONCURRENCY, float(c), requests_per_level) for c in sorted(set(concurrency))]
    levels += [Level(POISSON, float(r), requests_per_level) for r in sorted(set(rates))]
    for level in levels:
        if level.value <= 0:
            raise ValueError(f"load level {level.name}: must be positive")
        if level.mode == CONCURRENCY and level.value > level.requests:
            raise ValueError(f"{level.name}: {level.requests} requests cannot keep {level.value:g} in flight")
    total = sum(level.requests for level in levels)
    if total > max_requests:
        raise ValueError(f"the sweep sends {total} requests, over the bound of {max_requests}")
    if not levels:
        raise ValueError("no load level: give concurrency levels or Poisson rates")
    return levels


def aiperf_args(
    target: Target,
    level: Level,
    dataset: Path,
    tokenizer: Path,
    out_dir: Path,
    request_timeout_s: float,
    sessions: int,
    seed: int = 0,
) -> list[str]:
    """``aiperf profile`` arguments for one level: streaming chat on loopback, the agent's prompts as ``multi_turn``
    JSONL, bounded by ``sessions`` (the conversations in the file, so each is sent whole: a request count let the tool
    start new ones and cut follow-ups), the tokenizer from the model's GGUF file, no UI, no GPU or server-metrics
    collectors (the engine is sampled by the caller). The API gets no cache-bust marker: it would enter the question
    the API retrieves with."""
    args = ["profile", "--model", target.model, "--url", target.url, "--endpoint-type", "chat", "--streaming"]
    args += ["--input-file", str(dataset), "--custom-dataset-type", "multi_turn", "--tokenizer", str(tokenizer)]
    args += ["--num-sessions", str(sessions), "--request-timeout-seconds", f"{request_timeout_s:g}"]
    if level.mode == CONCURRENCY:
        args += ["--concurrency", f"{level.value:g}"]
        if level.ramp_s > 0:  # linear from 1 to c: slot k opens at ramp_s * (k - 1) / (c - 1)
            args += ["--concurrency-ramp-duration", f"{level.ramp_s:g}"]
    else:
        args += ["--request-rate", f"{level.value:g}", "--arrival-pattern", "poisson"]
    if target.server_token_count:
        args.append("--use-server-token-count")
    if not target.agent_side:
        # a marker unique to the run and conversation at the start of its first user turn: the system prompt stays a
        # shared, cacheable prefix (as for the agent), the sources after it never come from an earlier run's cache
        args += ["--cache-bust", "first-turn-prefix"]
    # a new connection per request: with pooled ones, 2 of 10 requests per level failed (ServerDisconnected, "Can not
    # write request body") when llama-server had closed a kept-alive connection the tool then reused
    args += ["--connection-reuse-strategy", "never"]
    args += ["--random-seed", str(seed), "--ui", "none", "--no-server-metrics", "--no-gpu-telemetry"]
    args += ["--output-artifact-dir", str(out_dir)]
    return args


# -- the prompt mix -----------------------------------------------------------------------------------------------


def conversation_record(session: str, messages: list[dict], follow_ups: list[str], max_tokens: int | None) -> dict:
    """One AIPerf ``multi_turn`` conversation: the agent's messages (a leading system message stays the system prompt
    of every turn), then each follow-up as a later user turn; AIPerf sends each turn with the earlier turns and the
    model's real replies. ``max_tokens`` bounds every reply (None: the target decides, as the API does)."""
    turns: list[dict] = []
    for m in messages:
        if m["role"] == "system" and not turns:
            turns.append({"role": "system", "text": m["content"]})
        elif m["role"] == "user":
            turns.append({"text": m["content"]})
        else:
            raise ValueError(f"{session}: a {m['role']!r} message inside the prompt is not supported")
    turns += [{"text": text} for text in follow_ups]
    for turn in turns:
        if max_tokens and turn.get("role") != "system":
            turn["output_length"] = max_tokens
    return {"session_id": session, "turns": turns}


def shared_system_text(records: list[dict]) -> str:
    """The system text every conversation starts with ('' when they do not share one): what a warm engine holds."""
    texts = {r["turns"][0]["text"] if r["turns"] and r["turns"][0].get("role") == "system" else "" for r in records}
    return texts.pop() if len(texts) == 1 else ""


def requests_of(record: dict) -> int:
    return sum(1 for t in record["turns"] if t.get("role") != "system")


def level_datasets(records: list[dict], levels: list[Level]) -> Iterator[list[dict]]:
    """The conversations each level sends, taken in turn from the pool (a level starts where the last one stopped, so
    repeated prompts do not meet their own cached prefix), exactly its request count: a conversation that would go
    over it keeps only its first turns. The pool wraps when used up. Each is sent whole (``aiperf_args``)."""
    if not records:
        raise ValueError("no prompts to send")
    i = 0
    for level in levels:
        chosen, n = [], 0
        while n < level.requests:
            record = _first_turns(records[i % len(records)], level.requests - n)
            chosen.append({**record, "session_id": f"{record['session_id']}-{level.name}-{len(chosen)}"})
            n += requests_of(record)
            i += 1
        yield chosen


def _first_turns(record: dict, requests: int) -> dict:
    if requests_of(record) <= requests:
        return record
    turns, kept = [], 0
    for turn in record["turns"]:
        if turn.get("role") != "system":
            if kept == requests:
                break
            kept += 1
        turns.append(turn)
    return {**record, "turns": turns}


def write_jsonl(records: Iterable[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# -- the tool's export ----------------------------------------------------------------------------------------------

LATENCIES = {"ttft": "time_to_first_token", "itl": "inter_token_latency", "e2e": "request_latency"}


def parse_export(doc: dict) -> dict:
    """One row from AIPerf's ``profile_export_aiperf.json``: latencies in ms (p50/p95/p99), throughput, counts.
    A metric the run could not measure (no request finished) is None."""

    def stat(metric: str, key: str) -> float | None:
        value = (doc.get(metric) or {}).get(key)
        return None if value is None else float(value)

    row: dict = {}
    for short, metric in LATENCIES.items():
        for p in ("p50", "p95", "p99"):
            row[f"{short}_{p}_ms"] = stat(metric, p)
    completed = int(stat("request_count", "avg") or 0)
    errors = stat("error_request_count", "avg")
    if errors is None:  # an export without the counter: its error summary
        errors = sum(int(e.get("count", 0)) for e in doc.get("error_summary") or [])
    errors = int(errors)
    sent = completed + errors
    row.update(
        output_tokens_per_s=stat("output_token_throughput", "avg"),
        requests_per_s=stat("request_throughput", "avg"),
        completed=completed,
        errors=errors,
        error_rate=errors / sent if sent else 1.0,
        duration_s=stat("benchmark_duration", "avg"),
        input_tokens_avg=stat("input_sequence_length", "avg"),
        output_tokens_avg=stat("output_sequence_length", "avg"),
        prompt_cache_read_pct=stat("overall_usage_prompt_cache_read_pct", "avg"),
    )
    return row


def request_records(text: str) -> list[dict]:
    """AIPerf's per-request records (``profile_export.jsonl``), in send order: session, turn, start and end (ns), TTFT
    and end-to-end (ms; None where the tool has none), prompt tokens, those read from the server's cache, tokens out."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        m, meta = rec.get("metrics") or {}, rec.get("metadata") or {}

        def value(key: str, m=m) -> float | None:
            v = (m.get(key) or {}).get("value")
            return None if v is None else float(v)

        out.append({
            "session": meta.get("conversation_id"), "turn": int(meta.get("turn_index") or 0),
            "start_ns": meta.get("request_start_ns"), "end_ns": meta.get("request_end_ns"),
            "ttft_ms": value("time_to_first_token"), "e2e_ms": value("request_latency"),
            "prompt": value("input_sequence_length") or 0.0, "cached": value("usage_prompt_cache_read_tokens") or 0.0,
            "out": value("output_sequence_length"),
        })  # fmt: skip
    return sorted(out, key=lambda r: r["start_ns"] or 0)


def settle(row: dict, requested: int, timed_out: bool) -> dict:
    """A run's row with the requests it never finished (stopped at its time limit) counted as failed: a level's p95
    comes from the requests that finished, so a level that did not finish them all cannot meet an SLO."""
    unfinished = max(0, requested - row["completed"] - row["errors"])
    return {
        **row,
        "unfinished": unfinished,
        "error_rate": (row["errors"] + unfinished) / requested,
        "timed_out": timed_out,
    }


# -- the engine's own numbers ---------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {name or name{labels}: value}; comments and malformed lines are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m or line.startswith("#"):
            continue
        try:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        except ValueError:
            continue
    return out


def engine_gauges(metrics: dict[str, float]) -> dict[str, float | None]:
    """llama-server's queue from its ``/metrics``: requests being processed (in a slot) and deferred (waiting for
    one); ``kv_cache_usage_ratio`` where the build still exports it (llama.cpp removed it in 2025; ``slots_kv``)."""
    return {
        "processing": metrics.get("llamacpp:requests_processing"),
        "deferred": metrics.get("llamacpp:requests_deferred"),
        "kv_ratio": metrics.get("llamacpp:kv_cache_usage_ratio"),
    }


def slot_counts(slots: list[dict]) -> list[dict]:
    """Each slot's id, context, whether it is busy, and the tokens it holds; nothing of its text."""
    return [
        {
            "id": s.get("id"),
            "n_ctx": int(s.get("n_ctx", 0)),
            "is_processing": bool(s.get("is_processing")),
            "n_prompt_tokens": int(s.get("n_prompt_tokens", 0)),
            "next_token": [{"n_decoded": int(t.get("n_decoded", 0))} for t in s.get("next_token") or []],
        }
        for s in slots
        if isinstance(s, dict)
    ]


def slots_kv(slots: list[dict]) -> dict[str, float]:
    """KV-cache use from llama-server's ``/slots``: the tokens the busy slots hold (prompt + generated) over the
    context of all slots. Idle slots' cached prompts are not counted (the server does not report them)."""
    ctx = sum(int(s.get("n_ctx", 0)) for s in slots)
    held = 0
    for s in slots:
        if s.get("is_processing"):
            decoded = sum(int(t.get("n_decoded", 0)) for t in s.get("next_token") or [])
            held += int(s.get("n_prompt_tokens", 0)) + decoded
    return {"kv_tokens": float(held), "kv_use": held / ctx if ctx else 0.0}


def summarize_samples(samples: list[dict]) -> dict:
    """Queue depth (processing + deferred) and KV-cache use over a run's samples: mean and max; None without samples."""

    def values(key: str) -> list[float]:
        return [float(s[key]) for s in samples if s.get(key) is not None]

    depth = [
        float(s["processing"] or 0) + float(s["deferred"] or 0) for s in samples if s.get("processing") is not None
    ]
    out: dict = {"samples": len(samples)}
    for name, xs in (("queue_depth", depth), ("deferred", values("deferred")), ("kv_use", values("kv_use"))):
        out[f"{name}_mean"] = sum(xs) / len(xs) if xs else None
        out[f"{name}_max"] = max(xs) if xs else None
    return out


# -- the SLO search -------------------------------------------------------------------------------------------------


def meets(row: dict, slo: Slo) -> bool:
    ttft, e2e = row.get("ttft_p95_ms"), row.get("e2e_p95_ms")
    return (
        ttft is not None
        and e2e is not None
        and ttft <= slo.ttft_p95_ms
        and e2e <= slo.e2e_p95_ms
        and row.get("completed", 0) > 0
        and row.get("error_rate", 1.0) <= slo.max_error_rate
    )


def capacity(rows: list[dict], slo: Slo) -> dict:
    """Per (target, mode): the highest level meeting ``slo`` with every lower level meeting it too, and the first level
    that misses it. ``passes_above_miss``: a level above the first miss met the SLO again (noise, or a load the
    sweep did not order): the capacity is not raised by it. ``rows``: ``parse_export`` rows with target, mode, value."""
    out: dict[str, dict] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["mode"]), []).append(row)
    for (target, mode), group in sorted(groups.items()):
        best, miss, again = None, None, False
        for row in sorted(group, key=lambda r: r["value"]):
            if meets(row, slo):
                if miss is None:
                    best = row
                else:
                    again = True
            elif miss is None:
                miss = row
        out[f"{target}/{mode}"] = {
            "target": target,
            "mode": mode,
            "max_level": best["value"] if best else None,
            "requests_per_s": best["requests_per_s"] if best else None,
            "output_tokens_per_s": best["output_tokens_per_s"] if best else None,
            "first_miss": miss["value"] if miss else None,
            "passes_above_miss": again,
            "levels": len(group),
        }
    return out


def hardware_label(cpuinfo: str, cpus: int, gpu: str = "") -> str:
    """A short name for the machine a capacity holds for: the CPU model (or the GPU) and the core count."""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    model = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|CPU|Processor|\d+-Core", "", model)).strip() or "unknown CPU"
    return f"{gpu} x1" if gpu else f"{model}, {cpus} cores"


def curves_png(rows: list[dict], slo: Slo, title: str) -> bytes:
    """The sweep's curves against achieved requests/s, one line per (target, mode): p95 TTFT and p95 end-to-end
    latency with the SLO's bounds, output tokens/s, and the engine's mean queue depth and peak KV-cache use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.plots import png_bytes

    panels = [
        ("ttft_p95_ms", "p95 time to first token, s", slo.ttft_p95_ms),
        ("e2e_p95_ms", "p95 end-to-end latency, s", slo.e2e_p95_ms),
        ("output_tokens_per_s", "output tokens/s", None),
        ("queue_depth_mean", "mean queue depth (processing + deferred)", None),
        ("kv_use_max", "peak KV-cache use (busy slots / context)", None),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), dpi=90)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["mode"]), []).append(row)
    for ax, (key, label, bound) in zip(axes, panels):
        scale = 1000.0 if key.endswith("_ms") else 1.0
        for (target, mode), group in sorted(groups.items()):
            pts = sorted(
                (r for r in group if r.get(key) is not None and r.get("requests_per_s")), key=lambda r: r["value"]
            )
            xs, ys = [r["requests_per_s"] for r in pts], [r[key] / scale for r in pts]
            ax.plot(xs, ys, marker="o" if mode == CONCURRENCY else "^", label=f"{target} {mode}")
            for r, x, y in zip(pts, xs, ys):
                ax.annotate(
                    Level(mode, r["value"], 1).name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points"
                )
        if bound is not None:
            ax.axhline(bound / scale, color="red", linestyle="--", linewidth=1, label="SLO")
        ax.set_xlabel("achieved requests/s")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def record_name(llm: str, hardware: str) -> str:
    """The state-store name of a capacity record: one per (model, hardware); the SLO is inside it."""
    slug = re.sub(r"[^a-z0-9.]+", "-", hardware.lower()).strip("-") or "unknown"
    return f"{re.sub(r'[^a-z0-9.]+', '-', llm.lower()).strip('-')}/{slug}"
