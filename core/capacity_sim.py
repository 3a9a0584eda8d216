"""A closed-loop load against one llama-server, simulated batch by batch: the planner's ``Engine`` (decode step,
prefill rate, slots) run through llama-server's scheduler. Pure logic; ``bench_capacity --predict`` uses it for the
planner's check. Why the closed form of ``core.capacity_plan`` does not fit this server, and the logs behind each rule:
docs/serving.md ("The planner checked against this machine").

The scheduler as modelled (llama.cpp's ``server-context.cpp`` update loop):

- each iteration is one batch: one token for every slot that is generating, then prompt tokens of the slots still
  reading their prompt, in arrival order, up to ``batch_tokens`` (``--batch-size``, 2048) in all;
- between batches the server launches the requests in its queue into free slots; a request that arrives during a
  batch waits for its end; a slot's first token comes from the batch that ends its prompt;
- a batch with prompt tokens costs all its tokens at the prefill rate, a decode-only batch the engine's step for its
  size; a request waits for a free slot when every slot is busy;
- a request sent as a batch ends reaches the queue after the next batch has started (``TURNAROUND_S``), and a launch
  pass lasts until a request sent as the batch before it ended has arrived (``LAUNCH_S``): only the order matters.
  This held in run 6 of the check and not in run 8: in the server it is a race of a few milliseconds.

Sessions follow AIPerf's ``multi_turn`` closed loop: each takes the next conversation in order, sends a turn when the
reply before it is done, and session ``k`` opens ``ramp_s * k / (c - 1)`` after the first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from core.capacity_plan import Engine, mean, percentile

BATCH_TOKENS = 2048  # llama-server's default --batch-size: prompt and decode tokens of one iteration
TURNAROUND_S = 0.001  # from a send to the server's queue: after a batch that starts at once has begun
LAUNCH_S = 0.002  # a launch pass: longer than the turnaround


@dataclass
class _Request:
    session: int
    prompt: int  # uncached prompt tokens the server processes
    arrival: float  # sent by the client
    queued: float = 0.0  # in the server's queue
    left: int = 0  # prompt tokens not processed yet
    tokens: int = 0  # output tokens made so far
    first: float | None = None
    end: float | None = None
    output: int = 1  # the reply's length in tokens
    speed: float = 1.0  # the machine's speed while it is served, relative to the engine's calibration

    def __post_init__(self):
        self.left = max(1, self.prompt)  # a prompt wholly in the slot's cache still evaluates its last token


def _cost_s(engine: Engine, prompt_tokens: int, decoding: int) -> float:
    if prompt_tokens:
        return (prompt_tokens + decoding) / engine.prefill_tokens_per_s
    return engine.step_ms(decoding) / 1000


def simulate(
    engine: Engine,
    conversations: list[list[int]],
    output: int | Callable[[], int],
    concurrency: int,
    ramp_s: float = 0.0,
    batch_tokens: int = BATCH_TOKENS,
    turnaround_s: float = TURNAROUND_S,
    launch_s: float | Callable[[], float] = LAUNCH_S,
    speed: Callable[[], float] | None = None,
) -> list[_Request]:
    """Every request of ``conversations`` (each a list of its turns' uncached prompt tokens), sent by ``concurrency``
    sessions, each reply ``output`` tokens long (or as long as ``output()`` draws for it); the requests with their
    send, first-token and end times (s). ``turnaround_s``: from a send to the server's queue; ``launch_s``: the
    server's work to put queued requests into slots, during which later arrivals are launched with them (or what
    ``launch_s()`` draws for each pass). ``speed()``: each request's machine speed relative to the calibration (a
    batch runs at the mean of its requests'); 1 without it."""
    reply = output if callable(output) else (lambda: output)
    launch = launch_s if callable(launch_s) else (lambda: launch_s)
    pending = list(reversed(conversations))
    turns: dict[int, list[int]] = {}  # a session's turns still to send (bounded by the concurrency)
    waiting: list[_Request] = []  # sent, not yet in a slot
    active: list[_Request] = []  # in a slot
    done: list[_Request] = []

    def send(session: int, at: float) -> None:
        if not turns.get(session):
            if not pending:
                return
            turns[session] = list(pending.pop())
        r = _Request(session, turns[session].pop(0), at, output=max(1, reply()), speed=speed() if speed else 1.0)
        r.queued = at + turnaround_s
        waiting.append(r)

    for k in range(concurrency):
        send(k, ramp_s * k / (concurrency - 1) if concurrency > 1 else 0.0)
    t = 0.0
    while waiting or active:
        t = _launch(waiting, active, engine.max_batch, t, launch())
        if not active:
            t = min(r.queued for r in waiting)
            continue
        decoding = [r for r in active if r.first is not None]
        budget, reading = batch_tokens - len(decoding), []
        for r in (r for r in active if r.first is None):
            take = min(r.left, budget)
            if take > 0:
                reading.append((r, take))
                budget -= take
        t += _cost_s(engine, sum(n for _, n in reading), len(decoding)) / mean([r.speed for r in active])
        for r, n in reading:
            r.left -= n
            if r.left == 0:
                r.first, r.tokens = t, 1
        for r in decoding:
            r.tokens += 1
        for r in [r for r in active if r.tokens >= r.output]:
            r.end = t
            active.remove(r)
            done.append(r)
            send(r.session, t)
    return done


def _launch(waiting: list[_Request], active: list[_Request], slots: int, t: float, launch_s: float) -> float:
    """Between batches the server empties its queue into free slots. A pass that launches anything lasts
    ``launch_s``, and a request that arrives meanwhile is launched in the same pass. Returns when the batch starts."""
    end = t
    while len(active) < slots:
        ready = [r for r in waiting if r.queued <= end]
        if not ready:
            break
        r = min(ready, key=lambda r: r.queued)
        waiting.remove(r)
        active.append(r)
        end = t + launch_s
    return end


def measured_like(requests: list[_Request]) -> dict:
    """What a load tool reports of these requests (ms; per-second rates over the first send to the last reply)."""
    ttft = [1000 * (r.first - r.arrival) for r in requests]
    e2e = [1000 * (r.end - r.arrival) for r in requests]
    span = max(r.end for r in requests) - min(r.arrival for r in requests)
    return {
        "requests_per_s": len(requests) / span,
        "output_tokens_per_s": sum(r.tokens for r in requests) / span,
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p95_ms": percentile(ttft, 95),
        "e2e_mean_ms": mean(e2e),
        "e2e_p50_ms": percentile(e2e, 50),
        "e2e_p95_ms": percentile(e2e, 95),
    }


def sampled(
    engine: Engine,
    conversations: list[list[int]],
    reply_lengths: list[int],
    concurrency: int,
    ramp_s: float = 0.0,
    draws: int = 200,
    race: float = 0.5,
    seed: int = 0,
    speeds: list[list[float]] | None = None,
) -> list[dict]:
    """What the load tool would report, ``draws`` times: each reply's length drawn from ``reply_lengths`` (replies
    measured before, which may stop before the token limit), and each launch pass, with probability ``race``, long
    enough to take a request sent as the batch before it ended (in the server a race of a few milliseconds, which
    went one way in run 6 of the check and the other in run 8; a coin, not a fit). ``speeds``: the machine's speed
    measured request by request in earlier runs (``speed_of``), one list per run; each simulated load takes one run's
    and each of its requests draws from it (none: the calibration's). The machine's speed shifts run by run (run 9
    of the check ran 10-20% slow for a minute, run 10 at its calibration): speeds pooled across runs and drawn per
    request average out over a level's requests and left run 10 outside a narrow interval."""
    rng = random.Random(seed)
    out = []
    for _ in range(draws):
        run = rng.choice(speeds) if speeds else None
        done = simulate(
            engine,
            conversations,
            lambda: rng.choice(reply_lengths),
            concurrency,
            ramp_s,
            launch_s=lambda: LAUNCH_S if rng.random() < race else 0.0,
            speed=(lambda run=run: rng.choice(run)) if run else None,
        )
        out.append(measured_like(done))
    return out


def engine_s(engine: Engine, uncached: int, output: int) -> float:
    """The engine's time for one request served alone: its prompt, then its reply token by token."""
    return _cost_s(engine, max(1, uncached), 0) + (output - 1) * engine.step_ms(1) / 1000


def speed_of(engine: Engine, uncached: int, output: int, seconds: float) -> float:
    """How fast the machine ran one request served alone (nothing batched with it), relative to ``engine``: the
    engine's time for it over the measured time, send to last token."""
    return engine_s(engine, uncached, output) / seconds


def spread(samples: list[dict], key: str) -> dict:
    """The median and the 5th-95th percentile interval of ``key`` over the samples."""
    values = [s[key] for s in samples]
    return {"median": percentile(values, 50), "p5": percentile(values, 5), "p95": percentile(values, 95)}
