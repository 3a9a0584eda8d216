"""eval_questions: the golden set, built deterministically from the indexed corpus, one shard at a time."""

import dagster as dg
import pyarrow as pa

from assets.evaluation.state import GOLDEN, GOLDEN_TABLE, asset
from assets.knowledge import vector_index
from assets.knowledge.state import iter_live_documents
from assets.metadata import md_table
from core.evaluation import build_golden_set, merge_golden
from resources.state_store import PipelineStateStore


class GoldenSetConfig(dg.Config):
    size: int = 300  # questions in the set


@asset(
    kinds={"python"},
    deps=[vector_index],
    description="The golden set, built deterministically from the indexed corpus: abstracts with a CONCLUSIONS section; the "
    "title phrased as a question, the conclusions as the reference answer, the document as the gold source (and title -> "
    "document as a retrieval pair). Stable order by hash of the key; the version names the rules, the size and a digest. "
    "Reads the corpus shard by shard, keeping at most `size` items per shard.",
)
def eval_questions(
    context: dg.AssetExecutionContext, config: GoldenSetConfig, pipeline_state: PipelineStateStore
) -> dg.MaterializeResult:
    chosen, eligible = [], 0
    for docs in iter_live_documents(pipeline_state):
        shard_items, _ = build_golden_set(docs.to_pylist(), size=config.size)
        eligible += docs.num_rows
        chosen, _ = merge_golden([*chosen, *shard_items], config.size)  # bounded: never more than 2 x size items
    items, version = merge_golden(chosen, config.size)
    if not items:
        raise dg.Failure("no indexed document has a conclusions section: the golden set would be empty")
    rows = [dict(i.as_row(), version=version) for i in items]
    previous = pipeline_state.read(GOLDEN_TABLE, GOLDEN)
    pipeline_state.write(GOLDEN_TABLE, pa.Table.from_pylist(rows, schema=GOLDEN))
    prev_version = previous.column("version")[0].as_py() if previous.num_rows else ""
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "changed": version != prev_version,
            "questions": len(items),
            "eligible_documents": eligible,
            "preview": md_table(rows, ["question", "reference", "gold_doc_keys"], limit=5),
        }
    )
