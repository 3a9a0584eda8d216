"""feedback_candidates: negative user feedback turned into candidate golden items for review, and the daily rollup.

The answers and feedback come from the API (``agents/records.py``) through the pipeline state store; the logic is
in ``core/feedback.py``. Feedback is streamed (one record at a time); the rollup holds counters per day; the
candidate table is review-sized (negative feedback only) and keeps every reviewer's verdict across runs.
"""

import base64
import json

import dagster as dg
import pyarrow as pa

from agents.records import AnswerRecords
from assets.evaluation.state import (
    FEEDBACK_CANDIDATES,
    FEEDBACK_CANDIDATES_TABLE,
    FEEDBACK_DAILY,
    FEEDBACK_DAILY_TABLE,
    FEEDBACK_RATE_PNG,
    asset,
    read_feedback_candidates,
)
from assets.metadata import md_table
from core.feedback import NEEDS_REVIEW, daily_rollup, golden_candidate, is_negative
from core.plots import png_bytes
from resources.state_store import PipelineStateStore

PLOT_DAYS = 90


def _row(candidate: dict) -> dict:
    return {**candidate, "lineage": json.dumps(candidate["lineage"], sort_keys=True)}


def _rate_png(days: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = days[-PLOT_DAYS:]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    xs = list(range(len(days)))
    for name in ("feedback_rate", "negative_rate"):
        ys = [d[name] for d in days]
        ax.plot(xs, [y if y is not None else float("nan") for y in ys], marker="o", label=name)
    step = max(1, len(days) // 10)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([d["date"] for d in days][::step], rotation=30, fontsize=7, ha="right")
    ax.set_ylim(0, 1.02)
    ax.set_title("User feedback per day (rate: feedback / answers; negative: negative / feedback)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return png_bytes(fig)


@asset(
    kinds={"python"},
    description="User feedback on the API's answers (POST /v1/feedback): every negative one (thumbs down or score <= 2) "
    "joined with its answer, question, citations and lineage becomes a candidate golden item for review "
    "(eval_feedback_candidates, keyed by answer: a reviewer's accepted/rejected status is kept across runs), and a "
    "daily rollup of answers, feedback and negative feedback with their rates (eval_feedback_daily, plotted).",
)
def feedback_candidates(context: dg.AssetExecutionContext, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    records = AnswerRecords(pipeline_state)
    previous = read_feedback_candidates(pipeline_state)
    previous_ids = {r["id"] for r in previous}
    reviewed = {r["id"]: r for r in previous if r["status"] != NEEDS_REVIEW}  # a reviewer's row stands as it is
    del previous

    candidates: dict[str, dict] = {}
    missing = 0

    def feedback_stream():
        nonlocal missing
        for fb in records.iter_feedback():
            if is_negative(fb):
                answer = records.answer_on(fb["date"], fb["answer_id"]) if fb.get("date") else None
                if answer is None:
                    missing += 1
                else:
                    candidate = golden_candidate(fb, answer)
                    candidates[candidate["id"]] = reviewed.pop(candidate["id"], None) or _row(candidate)
            yield fb

    days = daily_rollup(records.iter_answer_dates(), feedback_stream())
    rows = sorted([*candidates.values(), *reviewed.values()], key=lambda r: r["id"])
    pipeline_state.write(FEEDBACK_CANDIDATES_TABLE, pa.Table.from_pylist(rows, schema=FEEDBACK_CANDIDATES))
    pipeline_state.write(FEEDBACK_DAILY_TABLE, pa.Table.from_pylist(days, schema=FEEDBACK_DAILY))
    if missing:
        context.log.warning(f"{missing} negative feedback record(s) name an answer that is no longer stored: skipped")

    answers = sum(d["answers"] for d in days)
    feedback = sum(d["feedback"] for d in days)
    negative = sum(d["negative"] for d in days)
    new = [r for r in rows if r["id"] not in previous_ids]
    metadata = {
        "answers": answers,
        "feedback": feedback,
        "negative": negative,
        "new_candidates": len(new),
        "candidates": len(rows),
        "needs_review": sum(r["status"] == NEEDS_REVIEW for r in rows),
        "missing_answers": missing,
        "feedback_rate": dg.MetadataValue.float(feedback / answers) if answers else dg.MetadataValue.null(),
        "negative_rate": dg.MetadataValue.float(negative / feedback) if feedback else dg.MetadataValue.null(),
        "candidates_preview": md_table(
            [
                {
                    **r,
                    "generation": json.loads(r["lineage"] or "{}").get("index_generation"),
                    "citations": ", ".join(r["citations"] or []),
                }
                for r in sorted(rows, key=lambda r: (r["status"] != NEEDS_REVIEW, -(r["feedback_at"] or 0)))
            ],
            ["id", "status", "score", "question", "comment", "citations", "generation"],
            limit=10,
        ),
        "daily": md_table(days[::-1], ["date", "answers", "feedback", "negative", "feedback_rate", "negative_rate"]),
    }
    if days:
        png = _rate_png(days)
        pipeline_state.put_bytes(FEEDBACK_RATE_PNG, png)
        metadata["feedback_rate_plot"] = dg.MetadataValue.md(
            f"![feedback rate](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
        metadata["feedback_rate_png"] = f"{pipeline_state.describe()}/{FEEDBACK_RATE_PNG}"
    return dg.MaterializeResult(metadata=metadata)
