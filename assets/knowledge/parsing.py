"""parsed_documents: text and metadata of every document, parsed on Ray shard by shard; failures quarantined."""

import time

import dagster as dg

from assets.knowledge.common import asset, run_stage
from assets.knowledge.inventory import document_inventory
from assets.knowledge.state import (
    DOCUMENTS,
    DOCUMENTS_TABLE,
    INVENTORY_TABLE,
    PARSE_QUARANTINE_TABLE,
    QUARANTINE,
    plan,
    sum_stats,
)
from assets.metadata import md_table, quarantine_table
from core.documents import DEFAULT_MAX_BYTES, PARSER_VERSION
from resources.data_path import resource_spec
from resources.document_store import DocumentStoreResource
from resources.ocr import OcrResource
from resources.ray_jobs import RayJobRunner
from resources.state_store import PipelineStateStore
from resources.vision import VisionResource


class ParseConfig(dg.Config):
    max_bytes: int = DEFAULT_MAX_BYTES


def document_types(store: PipelineStateStore) -> list[dict]:
    """Documents per (type, source format), counted shard by shard."""
    counts: dict[tuple[str, str], int] = {}
    for _, t in store.iter_shards(DOCUMENTS_TABLE, DOCUMENTS, columns=["doc_type", "source_format"]):
        for d, f in zip(t.column("doc_type").to_pylist(), t.column("source_format").to_pylist()):
            counts[(d or "unknown", f)] = counts.get((d or "unknown", f), 0) + 1
    return [{"doc_type": d, "source_format": f, "documents": n} for (d, f), n in sorted(counts.items())]


def quarantine_rows(store: PipelineStateStore, limit: int = 100) -> list[dict]:
    rows: list[dict] = []
    for _, table in store.iter_shards(PARSE_QUARANTINE_TABLE, QUARANTINE):
        rows.extend(table.to_pylist()[: limit - len(rows)])
        if len(rows) >= limit:
            break
    return rows


@asset(
    kinds={"ray", "python"},
    deps=[document_inventory],
    description="Text and metadata of every document, one parser per format (PubMed XML, JATS, text, Markdown, HTML, PDF, "
    "JSON, CSV, PNG/JPEG/TIFF) chosen from the content, as Ray tasks over the dirty shards. PDF pages keep their page "
    "numbers and their tables (as Markdown); pages without a text layer and images are read by OCR (Tesseract), and "
    "where a vision model is deployed (eks) it reads the pages OCR cannot and describes figures; each "
    "document gets a type (article, clinical note, form, table-heavy report). A document is read only when its ETag "
    "changed and parsed only when its content did; one that fails (an unreadable scan too) is quarantined with its key "
    "and reason, and the run goes on.",
)
def parsed_documents(
    context: dg.AssetExecutionContext,
    config: ParseConfig,
    document_store: DocumentStoreResource,
    pipeline_state: PipelineStateStore,
    ray_jobs: RayJobRunner,
    ocr: OcrResource,
    vision: VisionResource,
) -> dg.MaterializeResult:
    t0 = time.perf_counter()
    try:
        options = ocr.options()
        if vision.available:
            options.vision = vision
        ocr_version = options.version
        ocr_spec = resource_spec(ocr)
    except (RuntimeError, OSError) as exc:
        # no engine here: scans are quarantined with the reason and read once an engine is there; the rest parses
        context.log.warning(f"OCR unavailable, scans will be quarantined: {exc}")
        ocr_version, ocr_spec = "none", None
    items = plan(
        pipeline_state,
        DOCUMENTS_TABLE,
        (INVENTORY_TABLE,),
        f"{PARSER_VERSION}:{config.max_bytes}:{ocr_version}",
        prev=(DOCUMENTS_TABLE, PARSE_QUARANTINE_TABLE),
    )
    entries, info = run_stage(
        context,
        ray_jobs,
        pipeline_state,
        "resources.data_path:parse_stage",
        {
            "items": items,
            "documents": resource_spec(document_store),
            "max_bytes": config.max_bytes,
            "ocr": ocr_spec,
            "vision": vision.worker_spec(),
        },
        (DOCUMENTS_TABLE, PARSE_QUARANTINE_TABLE),
        label="parsing",
        item_unit="documents",
    )
    stats = sum_stats(info["computed"][DOCUMENTS_TABLE], "parsed", "read", "new", "changed", "deleted", "ocr_pages")
    quarantine = quarantine_rows(pipeline_state)
    quarantined = pipeline_state.table_rows(PARSE_QUARANTINE_TABLE)
    if quarantined:
        context.log.warning(
            f"{quarantined} document(s) quarantined, e.g. {quarantine[0]['key']}: {quarantine[0]['reason']}"
        )
    preview = next((t for _, t in pipeline_state.iter_shards(DOCUMENTS_TABLE, DOCUMENTS) if t.num_rows), None)
    return dg.MaterializeResult(
        metadata={
            "documents": pipeline_state.table_rows(DOCUMENTS_TABLE),
            "quarantined": quarantined,
            "parsed_this_run": stats["parsed"],
            "ocr_pages_this_run": stats["ocr_pages"],
            "ocr_engine": ocr_version,
            "vision_model": vision.worker_spec()["model"] if vision.available else "none (OCR alone)",
            "document_types": md_table(document_types(pipeline_state), ["doc_type", "source_format", "documents"], 20),
            "read_this_run": stats["read"],
            "dirty_shards": len(items),
            "resumed_shards": info.get("resumed", 0),
            "quarantine": quarantine_table(quarantine),
            "preview": md_table(
                preview.slice(0, 5).to_pylist() if preview is not None else [],
                ["doc_id", "title", "journal", "year", "source_format"],
                limit=5,
            ),
            "ray_seconds": info["seconds"],
            "seconds": round(time.perf_counter() - t0, 3),
            **info["progress"],  # shards done, documents parsed this run, wall seconds, documents_per_second
        }
    )


@dg.asset_check(
    asset=parsed_documents,
    description="Nothing is lost: every inventoried document is either parsed or "
    "quarantined with a reason (checked shard by shard).",
)
def every_document_accounted_for(pipeline_state: PipelineStateStore) -> dg.AssetCheckResult:
    from assets.knowledge.state import INVENTORY

    missing: list[str] = []
    no_reason: list[str] = []
    counts = {"inventoried": 0, "parsed": 0, "quarantined": 0}
    docs_m, q_m = pipeline_state.manifest(DOCUMENTS_TABLE), pipeline_state.manifest(PARSE_QUARANTINE_TABLE)
    for shard, inv in pipeline_state.iter_shards(INVENTORY_TABLE, INVENTORY, columns=["key"]):
        name = pipeline_state.shard_name(shard)
        docs = pipeline_state.read_shard(
            DOCUMENTS_TABLE, shard, DOCUMENTS, entry=docs_m.get(name) or {}, columns=["key"]
        )
        q = pipeline_state.read_shard(
            PARSE_QUARANTINE_TABLE, shard, QUARANTINE, entry=q_m.get(name) or {}, columns=["key", "reason"]
        )
        seen = set(docs.column("key").to_pylist()) | set(q.column("key").to_pylist())
        missing += [k for k in inv.column("key").to_pylist() if k not in seen][: 50 - len(missing)]
        no_reason += [k for k, r in zip(q.column("key").to_pylist(), q.column("reason").to_pylist()) if not r]
        counts["inventoried"] += inv.num_rows
        counts["parsed"] += docs.num_rows
        counts["quarantined"] += q.num_rows
    return dg.AssetCheckResult(
        passed=not missing and not no_reason,
        metadata={
            **counts,
            "missing": dg.MetadataValue.json(missing),
            "quarantine_list": quarantine_table(quarantine_rows(pipeline_state)),
        },
    )
