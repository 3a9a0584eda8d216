"""The index generation lifecycle as one pure state machine.

A generation is one index built with one embedding model, dimension and mapping (``core.ids.generation_id``);
a rebuild of the same lineage gets a ``_r<timestamp>`` suffix. Its life:

    (built) --first generation, or a new model/mapping--> serving
    (built) --rebuild of the serving lineage-----------> pending --gate passed--> promoted (serving)
                                                          pending --gate failed--> rejected
                                                          pending --a new model/mapping serves--> superseded

Only ``pending`` can move; every other state is final. The assets ask ``on_build`` what a freshly maintained
generation means and apply ``transition``; the record is saved in one place (the knowledge state module).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

STATUSES = ("pending", "promoted", "rejected", "superseded")
TRANSITIONS = {"pending": {"promoted", "rejected", "superseded"}}

LINEAGE_PREFIX = "index/lineage/"  # + generation -> {"embedding_model", "chunker_version"} in the state store


class TransitionError(ValueError):
    pass


@dataclass(frozen=True)
class Candidate:
    generation: str
    status: str
    reason: str
    updated_at: float

    def as_dict(self) -> dict:
        return asdict(self)


def is_pending(candidate: Candidate | None) -> bool:
    """A candidate waiting for the evaluation gate (a rebuild not yet promoted or rejected)."""
    return candidate is not None and candidate.status == "pending"


def of_lineage(generation: str | None, base: str) -> bool:
    return bool(generation) and (generation == base or generation.startswith(f"{base}_r"))


def rebuild_name(base: str, now: float | None = None) -> str:
    return f"{base}_r{time.strftime('%Y%m%d%H%M%S', time.gmtime(now if now is not None else time.time()))}"


def target_generation(base: str, serving: str | None, candidate: Candidate | None, exists) -> str:
    """The generation incremental runs maintain: a pending candidate of this lineage (the one about to serve), else
    the serving one when it is of this lineage (it may be a rebuild), else the lineage's base."""
    if is_pending(candidate) and of_lineage(candidate.generation, base) and exists(candidate.generation):
        return candidate.generation
    return serving if serving and of_lineage(serving, base) else base


@dataclass(frozen=True)
class BuildDecision:
    promote_now: bool  # switch the serving pointer at once
    candidate: Candidate | None  # the new candidate record, if this build makes (or supersedes) one
    reason: str


def on_build(
    generation: str, base: str, serving: str | None, candidate: Candidate | None, now: float | None = None
) -> BuildDecision:
    """What a maintained generation means for serving.

    - nothing serves yet, or the serving one is of another lineage (a new model or mapping; queries are embedded
      with the configured model, so serving must follow it): serve at once, and a pending candidate of the old
      lineage is superseded;
    - a different generation of the serving lineage (a rebuild): a pending candidate for the evaluation gate;
    - the serving generation itself: nothing changes.
    """
    now = time.time() if now is None else now
    if serving is None or (serving != generation and not of_lineage(serving, base)):
        superseded = None
        if is_pending(candidate) and candidate.generation != generation:
            superseded = transition(candidate, "superseded", f"a new model/mapping generation {generation} serves", now)
        return BuildDecision(
            True, superseded, "first generation" if serving is None else f"new lineage replaces {serving}"
        )
    if serving != generation:
        if is_pending(candidate) and candidate.generation == generation:
            return BuildDecision(False, None, "pending candidate maintained")
        return BuildDecision(
            False, Candidate(generation, "pending", f"built beside serving generation {serving}", now), "new candidate"
        )
    return BuildDecision(False, None, "serving generation maintained")


def transition(candidate: Candidate, status: str, reason: str, now: float | None = None) -> Candidate:
    if status not in TRANSITIONS.get(candidate.status, set()):
        raise TransitionError(f"generation {candidate.generation} is {candidate.status}; it cannot become {status}")
    return Candidate(candidate.generation, status, reason, time.time() if now is None else now)
