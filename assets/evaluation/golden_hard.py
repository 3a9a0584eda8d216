"""eval_questions_hard: the harder golden set (paraphrased yes/no questions with the conclusion's polarity)."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.evaluation.state import GOLDEN_HARD, GOLDEN_HARD_TABLE, asset
from assets.knowledge import vector_index
from assets.knowledge.state import iter_live_documents
from assets.metadata import md_table
from core.hard_set import HardItem, composition, set_version
from resources.state_store import PipelineStateStore

HARD_SET_FILE = Path(__file__).parent / "data" / "golden_hard.jsonl"


def load_hard_set(path: Path = HARD_SET_FILE) -> tuple[dict, list[HardItem]]:
    """The committed set (built by ``benchmarks/build_hard_set.py``): its header and items, checked against their
    recorded version so an edited file cannot pass for the versioned one."""
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    items = [HardItem(**json.loads(line)) for line in lines[1:] if line.strip()]
    if set_version(items) != header["version"]:
        raise ValueError(f"{path}: the items do not match the recorded version {header['version']}")
    return header, items


@asset(
    kinds={"python"},
    deps=[vector_index],
    description="The harder golden set: yes/no questions that paraphrase an abstract's conclusion without its title's "
    "words, each with the conclusion's polarity (supports / refutes / insufficient; a third or more are negative). "
    "Built from the corpus by benchmarks/build_hard_set.py (polarity by code, question by the LLM, filtered by code) "
    "and versioned by rules, size and digest; this step keeps the items whose documents are indexed.",
)
def eval_questions_hard(context: dg.AssetExecutionContext, pipeline_state: PipelineStateStore) -> dg.MaterializeResult:
    header, items = load_hard_set()
    wanted = pa.array([i.gold_doc_key for i in items], pa.string())
    indexed: set[str] = set()  # bounded by the set's size, not the corpus
    for docs in iter_live_documents(pipeline_state):
        keys = docs.column("key")
        indexed.update(keys.filter(pc.is_in(keys, value_set=wanted)).to_pylist())
    live = [i for i in items if i.gold_doc_key in indexed]
    version = f"{header['version']}@{len(live)}"
    rows = [dict(i.as_row(), version=version) for i in live]
    pipeline_state.write(GOLDEN_HARD_TABLE, pa.Table.from_pylist(rows, schema=GOLDEN_HARD))
    mix = composition(live)
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "set_version": header["version"],
            "questions": len(live),
            "questions_in_set": len(items),
            "composition": dg.MetadataValue.json(mix),
            "negative_share": round((mix["refutes"] + mix["insufficient"]) / len(live), 3) if live else 0.0,
            "mean_title_overlap": round(sum(i.title_overlap for i in live) / len(live), 3) if live else 0.0,
            "preview": md_table(rows, ["question", "polarity", "gold_doc_key"], limit=8),
        }
    )
