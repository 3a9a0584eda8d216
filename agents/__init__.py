"""Strands agents (orchestrator, RAG, evaluation, web search over MCP).

Agents import resources (``resources.retrieval.RetrieverResource`` for knowledge-base search),
never assets. The agents themselves arrive with the serving work (issue 4).
"""
