"""The knowledge stage: stored documents -> parsed -> chunked -> embedded on Ray -> indexed, shard by shard.

One module per step; ``state`` owns the tables (other stages read it, never a step's private helpers).
"""

import dagster as dg

from assets.knowledge.access import document_access, every_document_has_access
from assets.knowledge.chunking import ChunkingConfig, document_chunks
from assets.knowledge.classification import ClassifierConfig, document_classes, specialty_classifier, specialty_macro_f1
from assets.knowledge.embeddings import EmbeddingConfig, chunk_embeddings
from assets.knowledge.index import IndexConfig, index_matches_live_chunks, index_vectors_valid, vector_index
from assets.knowledge.inventory import document_inventory, shards_within_memory_bound
from assets.knowledge.jobs import MAIN_JOB, knowledge_job, nightly_reembedding_schedule, rebuild_index_job
from assets.knowledge.parsing import ParseConfig, every_document_accounted_for, parsed_documents
from assets.knowledge.sensors import new_documents_sensor

knowledge_assets = [
    document_inventory,
    document_access,
    parsed_documents,
    document_chunks,
    chunk_embeddings,
    specialty_classifier,
    document_classes,
    vector_index,
]
knowledge_checks = [
    shards_within_memory_bound,
    every_document_has_access,
    every_document_accounted_for,
    specialty_macro_f1,
    index_matches_live_chunks,
    index_vectors_valid,
]
knowledge_defs = dg.Definitions(
    assets=knowledge_assets,
    asset_checks=knowledge_checks,
    jobs=[knowledge_job, rebuild_index_job],
    schedules=[nightly_reembedding_schedule],
    sensors=[new_documents_sensor],
)

__all__ = [
    "ChunkingConfig",
    "ClassifierConfig",
    "EmbeddingConfig",
    "IndexConfig",
    "MAIN_JOB",
    "ParseConfig",
    "chunk_embeddings",
    "document_access",
    "document_chunks",
    "document_classes",
    "document_inventory",
    "knowledge_assets",
    "knowledge_checks",
    "knowledge_defs",
    "knowledge_job",
    "new_documents_sensor",
    "parsed_documents",
    "rebuild_index_job",
    "specialty_classifier",
    "vector_index",
]
