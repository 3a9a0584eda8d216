"""Progress of a long step, and the terminal bar that shows a run's: pure, no Dagster, no Ray.

``Progress`` counts units of work (shards, questions) and, optionally, the items they carry (documents, chunks); it
knows its rate and ETA and says when a line is due (every ``every_s`` seconds or ``every_frac`` of the total, and at
the end), so a step with 100,000 shards logs a few hundred lines, not 100,000. It keeps counters only: its memory
does not grow with the work.

``RunBar`` turns a run's step events and progress lines into what a terminal shows: one line redrawn in place on a
TTY, one plain line per finished step elsewhere (CI logs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

PROGRESS_TAG = "progress"  # first word of a progress log line: how readers (the CLI bar, tests) find them


def _num(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class Progress:
    """``done`` of ``total`` units, plus ``items`` (the rate is per item when ``item_unit`` is set, else per unit)."""

    label: str
    total: int
    unit: str = "shards"
    item_unit: str = ""
    every_s: float = 10.0
    every_frac: float = 0.1
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    items: int = 0
    extra: dict[str, int] = field(default_factory=dict)  # further counts by name (ocr_pages, quarantined): fixed keys
    started_at: float = field(default=-1.0)
    _last_at: float = field(default=-1.0, repr=False)
    _last_done: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.started_at < 0:
            self.started_at = self.clock()
        self._last_at = self.started_at

    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.started_at)

    def rate(self) -> float:
        """Items (or units) per second since the start."""
        elapsed = self.elapsed()
        n = self.items if self.item_unit else self.done
        return n / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (by units done); None before the first unit."""
        if self.done <= 0:
            return None
        remaining = max(0, self.total - self.done)
        return self.elapsed() * remaining / self.done

    def advance(self, done: int = 1, items: int = 0, **extra: int) -> bool:
        """Count ``done`` more units, ``items`` more items and the ``extra`` counts; True when a line is due."""
        self.done = min(self.total, self.done + done) if self.total else self.done + done
        self.items += items
        for name, n in extra.items():
            self.extra[name] = self.extra.get(name, 0) + n
        return self.due()

    def update(self, done: int, items: int | None = None) -> bool:
        """Set the counts (a callback that reports ``done of total`` rather than increments)."""
        return self.advance(done - self.done, 0 if items is None else items - self.items)

    def due(self) -> bool:
        finished = self.total > 0 and self.done >= self.total
        by_time = self.clock() - self._last_at >= self.every_s
        by_frac = self.total > 0 and (self.done - self._last_done) >= max(1.0, self.every_frac * self.total)
        if (finished and self._last_done < self.total) or ((by_time or by_frac) and self.done > self._last_done):
            self._last_at, self._last_done = self.clock(), self.done
            return True
        return False

    def line(self) -> str:
        """``progress embedding: 12/40 shards (30%), 3,100 chunks, 41.2 chunks/s, eta 68 s``"""
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        parts = [f"{PROGRESS_TAG} {self.label}: {self.done:,}/{self.total:,} {self.unit}{pct}"]
        if self.item_unit:
            parts.append(f"{self.items:,} {self.item_unit}")
        parts += [f"{n:,} {name.replace('_', ' ')}" for name, n in self.extra.items() if n]
        parts.append(f"{self.rate():,.1f} {self.item_unit or self.unit}/s")
        eta = self.eta_s()
        if self.total and self.done >= self.total:
            parts.append(f"done in {duration(self.elapsed())}")
        elif eta is not None:
            parts.append(f"eta {duration(eta)}")
        return ", ".join(parts)

    def snapshot(self) -> dict:
        eta = self.eta_s()
        return {
            "label": self.label,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "items": self.items,
            "item_unit": self.item_unit,
            **self.extra,
            "rate_per_s": round(self.rate(), 2),
            "elapsed_s": round(self.elapsed(), 2),
            "eta_s": None if eta is None else round(eta, 1),
        }

    def metadata(self, prefix: str = "") -> dict:
        """Totals, wall time and rate for a MaterializeResult (``prefix`` tells several trackers of one step apart)."""
        elapsed = self.elapsed()
        out = {f"{prefix}{self.unit}_done": self.done, f"{prefix}wall_seconds": round(elapsed, 3)}
        out[f"{prefix}{self.unit}_per_second"] = round(self.done / elapsed, 3) if elapsed > 0 else 0.0
        if self.item_unit:
            out[f"{prefix}{self.item_unit}_this_run"] = self.items
            out[f"{prefix}{self.item_unit}_per_second"] = round(self.rate(), 2)
        return out


class RunBar:
    """What a terminal shows of a run: steps done of ``total``, the current step and its latest progress line.

    ``tty``: one line redrawn with a carriage return (and erase-to-end) at most every ``min_interval_s``, finished by
    a newline in ``close``; otherwise one plain line per finished step. ``width``: the line's maximum length.
    """

    def __init__(
        self,
        total: int,
        out: TextIO,
        tty: bool,
        width: int = 100,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.out, self.tty, self.width = total, out, tty, max(40, width)
        self.min_interval_s, self.clock = min_interval_s, clock
        self.done = self.failed = 0
        self.current = ""
        self.detail = ""
        self.started_at = clock()
        self._step_started: dict[str, float] = {}  # steps running now: at most the executor's concurrency
        self._drawn_at = -1.0

    def step_started(self, step: str) -> None:
        self._step_started[step] = self.clock()
        self.current, self.detail = step, ""
        self._draw(force=True)  # once per step: the step's name shows even when the last one just finished

    def step_progress(self, step: str, message: str) -> None:
        self.current, self.detail = step, message.removeprefix(PROGRESS_TAG + " ")
        self._draw()

    def step_finished(self, step: str, outcome: str = "done") -> None:
        self.done += 1
        self.failed += outcome == "failed"
        seconds = self.clock() - self._step_started.pop(step, self.clock())
        if not self.tty:
            tail = f" ({self.detail})" if self.detail and self.current == step else ""
            self._write(f"[{self.done}/{self.total}] {step} {outcome} in {duration(seconds)}{tail}\n")
        if self.current == step:
            self.current, self.detail = "", ""
        self._draw(force=True)

    def bar(self) -> str:
        cells = 20
        filled = cells * self.done // self.total if self.total else cells
        head = f"[{'#' * filled}{'-' * (cells - filled)}] {self.done}/{self.total} steps"
        text = f"{head} {self.current}: {self.detail}" if self.detail else f"{head} {self.current}".rstrip()
        return text if len(text) <= self.width else text[: self.width - 3] + "..."

    def close(self, success: bool) -> None:
        verdict = "succeeded" if success and not self.failed else "FAILED"
        final = f"{self.done}/{self.total} steps, {verdict} in {duration(self.clock() - self.started_at)}"
        if self.tty:
            cells = 20
            filled = cells * self.done // self.total if self.total else cells
            self._write(f"\r[{'#' * filled}{'-' * (cells - filled)}] {final}\x1b[K\n")
        else:
            self._write(final + "\n")

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = self.clock()
        if not force and self._drawn_at >= 0 and now - self._drawn_at < self.min_interval_s:
            return
        self._drawn_at = now
        self._write("\r" + self.bar() + "\x1b[K")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
