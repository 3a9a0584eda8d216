"""The knowledge stage: stored documents -> parsed -> chunked -> embedded on Ray -> indexed, shard by shard.

One module per step; ``state`` owns the tables (other stages read it, never a step's private helpers).
"""

from assets.knowledge.access import document_access, every_document_has_access
from assets.knowledge.chunking import ChunkingConfig, document_chunks
from assets.knowledge.classification import ClassifierConfig, document_classes, specialty_classifier, specialty_macro_f1
from assets.knowledge.embeddings import EmbeddingConfig, chunk_embeddings
from assets.knowledge.index import IndexConfig, index_matches_live_chunks, index_vectors_valid, vector_index
from assets.knowledge.inventory import document_inventory, shards_within_memory_bound
from assets.knowledge.parsing import ParseConfig, every_document_accounted_for, parsed_documents

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

__all__ = [
    "ChunkingConfig",
    "ClassifierConfig",
    "EmbeddingConfig",
    "IndexConfig",
    "ParseConfig",
    "chunk_embeddings",
    "document_access",
    "document_chunks",
    "document_classes",
    "document_inventory",
    "knowledge_assets",
    "knowledge_checks",
    "parsed_documents",
    "specialty_classifier",
    "vector_index",
]
